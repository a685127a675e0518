//! `/api/v1/` paths and methods to a typed [`Route`] (pure). Stream names are checked with the
//! layout's rule, so a name the registry can never hold is a 404 before anything is looked up.

/// The API's path prefix (every route is below it).
pub const PREFIX: &str = "/api/v1/";

/// One API call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Streams,
    Stream(String),
    Kick(String),
    End(String),
    Origins,
    Cache,
    Viewers,
    Config,
    /// `POST reload`: the config file read and applied again (as on SIGHUP).
    Reload,
}

/// A path under [`PREFIX`] that is not a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    NotFound,
    /// The path exists with other methods (the `Allow` header's value).
    MethodNotAllowed(&'static str),
}

/// Routes `method` + `path` (which starts with [`PREFIX`]).
pub fn route(method: &http::Method, path: &str) -> Result<Route, RouteError> {
    let rest = path.strip_prefix(PREFIX).ok_or(RouteError::NotFound)?;
    let segments: Vec<&str> = rest.split('/').collect();
    let (route, allow) = match segments.as_slice() {
        ["streams"] => (Route::Streams, "GET"),
        ["origins"] => (Route::Origins, "GET"),
        ["cache"] => (Route::Cache, "GET"),
        ["viewers"] => (Route::Viewers, "GET"),
        ["config"] => (Route::Config, "GET"),
        ["reload"] => (Route::Reload, "POST"),
        ["streams", name] => (Route::Stream(stream_name(name)?), "GET"),
        ["streams", name, "kick"] => (Route::Kick(stream_name(name)?), "POST"),
        ["streams", name, "end"] => (Route::End(stream_name(name)?), "POST"),
        _ => return Err(RouteError::NotFound),
    };
    let wanted = if allow == "POST" {
        http::Method::POST
    } else {
        http::Method::GET
    };
    if *method == wanted {
        Ok(route)
    } else {
        Err(RouteError::MethodNotAllowed(allow))
    }
}

fn stream_name(raw: &str) -> Result<String, RouteError> {
    crate::layout::valid_name(raw)
        .then(|| raw.to_string())
        .ok_or(RouteError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn routes() {
        let get = |p: &str| route(&Method::GET, p);
        assert_eq!(get("/api/v1/streams"), Ok(Route::Streams));
        assert_eq!(
            get("/api/v1/streams/demo"),
            Ok(Route::Stream("demo".into()))
        );
        assert_eq!(
            route(&Method::POST, "/api/v1/streams/demo/kick"),
            Ok(Route::Kick("demo".into()))
        );
        assert_eq!(
            route(&Method::POST, "/api/v1/streams/demo/end"),
            Ok(Route::End("demo".into()))
        );
        assert_eq!(
            get("/api/v1/streams/demo/kick"),
            Err(RouteError::MethodNotAllowed("POST"))
        );
        assert_eq!(
            route(&Method::DELETE, "/api/v1/config"),
            Err(RouteError::MethodNotAllowed("GET"))
        );
        for p in [
            "/api/v1/",
            "/api/v1/streams/",
            "/api/v1/streams/a/b",
            "/api/v1/streams/..",
            "/api/v1/nope",
        ] {
            assert_eq!(get(p), Err(RouteError::NotFound), "{p}");
        }
        assert_eq!(get("/api/v1/origins"), Ok(Route::Origins));
        assert_eq!(get("/api/v1/cache"), Ok(Route::Cache));
        assert_eq!(get("/api/v1/viewers"), Ok(Route::Viewers));
    }
}
