//! Pipeline templates from `pipelines/`: embedded defaults, optionally overridden by files in
//! `[pipelines] dir`. Rendering is pure string work so it is unit-tested without GStreamer.

use super::TranscodeError;
use std::path::{Path, PathBuf};

/// The templates shipped in `pipelines/`, embedded so the binary runs from anywhere.
const EMBEDDED: &[(&str, &str)] = &[
    (
        "video-x264",
        include_str!("../../pipelines/video-x264.pipeline"),
    ),
    (
        "video-openh264",
        include_str!("../../pipelines/video-openh264.pipeline"),
    ),
    (
        "video-vaapih264",
        include_str!("../../pipelines/video-vaapih264.pipeline"),
    ),
    (
        "video-nvh264",
        include_str!("../../pipelines/video-nvh264.pipeline"),
    ),
    (
        "audio-aac",
        include_str!("../../pipelines/audio-aac.pipeline"),
    ),
    (
        "audio-voaac",
        include_str!("../../pipelines/audio-voaac.pipeline"),
    ),
    (
        "source-test-pattern",
        include_str!("../../pipelines/source-test-pattern.pipeline"),
    ),
    (
        "source-rtmp",
        include_str!("../../pipelines/source-rtmp.pipeline"),
    ),
    (
        "source-rtmp-video-only",
        include_str!("../../pipelines/source-rtmp-video-only.pipeline"),
    ),
    (
        "source-rtp-mpegts",
        include_str!("../../pipelines/source-rtp-mpegts.pipeline"),
    ),
    (
        "source-rtp-mpegts-video-only",
        include_str!("../../pipelines/source-rtp-mpegts-video-only.pipeline"),
    ),
    (
        "source-rtp-sdp",
        include_str!("../../pipelines/source-rtp-sdp.pipeline"),
    ),
    (
        "source-rtp-sdp-video-only",
        include_str!("../../pipelines/source-rtp-sdp-video-only.pipeline"),
    ),
    (
        "source-srt",
        include_str!("../../pipelines/source-srt.pipeline"),
    ),
    (
        "source-srt-video-only",
        include_str!("../../pipelines/source-srt-video-only.pipeline"),
    ),
    (
        "source-webrtc",
        include_str!("../../pipelines/source-webrtc.pipeline"),
    ),
    (
        "source-webrtc-video-only",
        include_str!("../../pipelines/source-webrtc-video-only.pipeline"),
    ),
    (
        "source-file",
        include_str!("../../pipelines/source-file.pipeline"),
    ),
    (
        "source-file-video-only",
        include_str!("../../pipelines/source-file-video-only.pipeline"),
    ),
];

/// Where templates are looked up: the operator's directory first, then the embedded set.
#[derive(Debug, Clone, Default)]
pub struct Templates {
    dir: Option<PathBuf>,
}

impl Templates {
    pub fn new(dir: &Path) -> Templates {
        Templates {
            dir: if dir.as_os_str().is_empty() {
                None
            } else {
                Some(dir.to_path_buf())
            },
        }
    }

    /// The raw text of template `name` (without the `.pipeline` suffix).
    pub fn load(&self, name: &str) -> Result<String, TranscodeError> {
        if let Some(dir) = &self.dir {
            let path = dir.join(format!("{name}.pipeline"));
            match std::fs::read_to_string(&path) {
                Ok(text) => return Ok(text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(TranscodeError::Template {
                        name: name.into(),
                        reason: format!("{}: {e}", path.display()),
                    });
                }
            }
        }
        EMBEDDED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.to_string())
            .ok_or_else(|| TranscodeError::Template {
                name: name.into(),
                reason: "no such template".into(),
            })
    }

    /// Loads and renders `name` with `vars`.
    pub fn render(&self, name: &str, vars: &[(&str, String)]) -> Result<String, TranscodeError> {
        render(name, &self.load(name)?, vars)
    }
}

/// Replaces `{placeholder}`s and drops `#` comment lines. Lines are joined with newlines, which
/// gst-launch syntax treats as whitespace, so a multi-line template stays one description.
pub fn render(
    name: &str,
    template: &str,
    vars: &[(&str, String)],
) -> Result<String, TranscodeError> {
    let mut out = String::with_capacity(template.len());
    for line in template
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let mut rest = line;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or_else(|| TranscodeError::Template {
                name: name.into(),
                reason: format!("unclosed '{{' in: {line}"),
            })?;
            let key = &after[..close];
            let value = vars
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.as_str())
                .ok_or_else(|| TranscodeError::Template {
                    name: name.into(),
                    reason: format!("unknown placeholder {{{key}}}"),
                })?;
            out.push_str(value);
            rest = &after[close + 1..];
        }
        out.push_str(rest);
        out.push('\n');
    }
    if out.trim().is_empty() {
        return Err(TranscodeError::Template {
            name: name.into(),
            reason: "template is empty".into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_placeholders_and_drops_comments() {
        let t = "# a comment\nx264enc bitrate={bitrate_kbps}\n ! video/x-h264\n";
        let r = render("t", t, &[("bitrate_kbps", "800".into())]).unwrap();
        assert_eq!(r, "x264enc bitrate=800\n! video/x-h264\n");
    }

    #[test]
    fn unknown_placeholder_names_template_and_key() {
        let e = render("video-x", "enc foo={nope}", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("video-x") && e.contains("{nope}"), "{e}");
    }

    #[test]
    fn every_embedded_template_renders_with_the_documented_placeholders() {
        let vars: Vec<(&str, String)> = [
            "bitrate_kbps",
            "bitrate_bps",
            "gop_frames",
            "fps",
            "width",
            "height",
            "name",
            "colorimetry",
            "port",
            "address",
            "location",
            "latency_ms",
        ]
        .iter()
        .map(|k| (*k, "1".to_string()))
        .collect();
        for (name, text) in EMBEDDED {
            render(name, text, &vars).unwrap();
        }
    }

    #[test]
    fn operator_dir_overrides_embedded() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("video-x264.pipeline"),
            "myenc rate={bitrate_kbps}",
        )
        .unwrap();
        let t = Templates::new(dir.path());
        assert_eq!(
            t.render("video-x264", &[("bitrate_kbps", "5".into())])
                .unwrap(),
            "myenc rate=5\n"
        );
        assert!(t.load("audio-aac").unwrap().contains("avenc_aac"));
        assert!(t.load("video-missing").is_err());
    }
}
