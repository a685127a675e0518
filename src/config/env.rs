//! `ZOOMATE_*` environment overrides for the keys operators change most.
//! Pure: takes the variables as pairs so tests never touch the process environment.

use super::{Config, ConfigError, LogFormat};

/// Applies recognised `ZOOMATE_*` variables to `config`. Unknown `ZOOMATE_*` names are errors,
/// so a misspelt override is noticed rather than ignored.
pub fn apply_env_overrides(
    config: &mut Config,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (name, value) in vars {
        let Some(key) = name.strip_prefix("ZOOMATE_") else {
            continue;
        };
        let addr = |v: &str| {
            v.parse().map_err(|_| {
                ConfigError::invalid(name.clone(), v, "not a socket address (HOST:PORT)")
            })
        };
        match key {
            "LOG" | "LOG_LEVEL" => config.log.level = value,
            "LOG_FORMAT" => {
                config.log.format = match value.as_str() {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    _ => return Err(ConfigError::invalid(name, value, "must be text or json")),
                }
            }
            "ORIGIN_ID" => config.origin.id = value,
            "ORIGIN_HTTP_LISTEN" => config.origin.http_listen = addr(&value)?,
            "ORIGIN_PUBLIC_URL" => config.origin.public_url = value,
            "RTMP_LISTEN" => config.rtmp.listen = addr(&value)?,
            "EDGE_LISTEN" => config.edge.listen = addr(&value)?,
            "EDGE_SIGNED_URL_SECRET" => {
                config.edge.signed_urls.secret = Some(super::Secret::new(value))
            }
            "STORE_DIR" => config.store.dir = value.into(),
            "VOD_DIR" => config.vod.dir = value.into(),
            "BUS_ENDPOINT" => config.bus.publish_endpoint = value,
            "PIPELINES_DIR" => config.pipelines.dir = value.into(),
            // Not an override: clap reads it as `--config` (the file this config came from).
            "CONFIG" => {}
            _ => {
                return Err(ConfigError::invalid(
                    name,
                    value,
                    "unknown ZOOMATE_* variable",
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_apply_and_bad_values_name_the_variable() {
        let mut c = Config::default();
        apply_env_overrides(
            &mut c,
            [("ZOOMATE_RTMP_LISTEN".into(), "127.0.0.1:1936".into())],
        )
        .unwrap();
        assert_eq!(c.rtmp.listen.port(), 1936);
        let e = apply_env_overrides(&mut c, [("ZOOMATE_RTMP_LISTEN".into(), "nope".into())])
            .unwrap_err();
        assert!(e.to_string().contains("ZOOMATE_RTMP_LISTEN") && e.to_string().contains("nope"));
        apply_env_overrides(&mut c, [("PATH".into(), "/bin".into())]).unwrap();
    }

    #[test]
    fn zoomate_config_names_the_file_and_is_not_an_unknown_override() {
        let mut c = Config::default();
        apply_env_overrides(&mut c, [("ZOOMATE_CONFIG".into(), "f.toml".into())]).unwrap();
        let e =
            apply_env_overrides(&mut c, [("ZOOMATE_CONFIGG".into(), "f.toml".into())]).unwrap_err();
        assert!(e.to_string().contains("ZOOMATE_CONFIGG"), "{e}");
    }
}
