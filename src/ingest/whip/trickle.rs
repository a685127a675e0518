//! Trickle ICE for WHIP sessions (RFC 9725 §4.3.1): a `PATCH` with an
//! `application/trickle-ice-sdpfrag` body (RFC 8840 §9) brings candidates the publisher
//! gathered after its offer. Pure: the fragment is parsed and checked here; the session hands
//! the candidates to its `webrtcbin`.
//!
//! Our own SDP-fragment reader (a few attribute lines), because GStreamer's SDP parser wants a
//! whole session description (`v=`, `o=`, `s=`, `t=`) and a fragment has none of them.
//! ICE restarts (a fragment with a new `ice-ufrag`) are not supported: §4.3.2 has them answered
//! 422.

/// Candidates in one PATCH, at most (a browser gathers a handful per interface).
pub const MAX_CANDIDATES: usize = 64;

/// One trickled candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrickledCandidate {
    /// The media section (`a=mid`) it belongs to, when the fragment names one.
    pub mid: Option<String>,
    /// `candidate:…` (the attribute without `a=`), as `webrtcbin`'s `add-ice-candidate` takes it.
    pub candidate: String,
}

/// What a fragment carries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fragment {
    pub ice_ufrag: Option<String>,
    pub ice_pwd: Option<String>,
    pub candidates: Vec<TrickledCandidate>,
    pub end_of_candidates: bool,
}

/// Why a fragment was refused (each a 4xx).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    #[error("fragment is not UTF-8 text")]
    NotText,
    #[error("fragment line {0} is not an SDP `a=` or `m=` line")]
    BadLine(usize),
    #[error("fragment has more than {MAX_CANDIDATES} candidates")]
    TooManyCandidates,
    #[error("fragment has a candidate with no value")]
    EmptyCandidate,
}

/// Parses an `application/trickle-ice-sdpfrag` body.
pub fn parse_fragment(body: &[u8]) -> Result<Fragment, FragmentError> {
    let text = std::str::from_utf8(body).map_err(|_| FragmentError::NotText)?;
    let mut f = Fragment::default();
    let mut mid: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        if line.starts_with("m=") {
            // A new media section: its candidates follow its `a=mid`.
            mid = None;
            continue;
        }
        let Some(attr) = line.strip_prefix("a=") else {
            return Err(FragmentError::BadLine(n + 1));
        };
        let (key, value) = attr.split_once(':').unwrap_or((attr, ""));
        match key {
            "ice-ufrag" => f.ice_ufrag = Some(value.to_string()),
            "ice-pwd" => f.ice_pwd = Some(value.to_string()),
            "mid" => mid = Some(value.to_string()),
            "end-of-candidates" => f.end_of_candidates = true,
            "candidate" => {
                if value.trim().is_empty() {
                    return Err(FragmentError::EmptyCandidate);
                }
                if f.candidates.len() >= MAX_CANDIDATES {
                    return Err(FragmentError::TooManyCandidates);
                }
                f.candidates.push(TrickledCandidate {
                    mid: mid.clone(),
                    candidate: attr.to_string(),
                });
            }
            // ice-options, group, anything else: nothing to do.
            _ => {}
        }
    }
    Ok(f)
}

/// Whether the fragment asks for an ICE restart: it names ICE credentials other than the
/// offer's (RFC 9725 §4.3.2).
pub fn is_ice_restart(fragment: &Fragment, offer_ufrag: Option<&str>) -> bool {
    match (&fragment.ice_ufrag, offer_ufrag) {
        (Some(new), Some(old)) => new != old,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// The offer's m-line index for `mid` (the first section when none is named: one BUNDLE
/// transport carries every section's candidates). `None` for a mid the offer does not have.
pub fn mline_index(mids: &[String], mid: Option<&str>) -> Option<u32> {
    match mid {
        None => Some(0),
        Some(m) => mids
            .iter()
            .position(|x| x == m)
            .and_then(|i| u32::try_from(i).ok()),
    }
}

/// The offer's ICE username fragment and its media sections' mids, in order.
pub fn offer_ice(offer: &gst_sdp::SDPMessageRef) -> (Option<String>, Vec<String>) {
    let mut ufrag = offer.attribute_val("ice-ufrag").map(str::to_string);
    let mut mids = Vec::new();
    for media in offer.medias() {
        if ufrag.is_none() {
            ufrag = media.attribute_val("ice-ufrag").map(str::to_string);
        }
        mids.push(media.attribute_val("mid").unwrap_or("").to_string());
    }
    (ufrag, mids)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAGMENT: &str = "a=ice-ufrag:EsAw\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n\
        a=group:BUNDLE 0 1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
        a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw network-id 1\r\n\
        a=candidate:3471623853 1 udp 2122194687 198.51.100.2 61765 typ host generation 0 ufrag EsAw network-id 2\r\n\
        a=end-of-candidates\r\n";

    #[test]
    fn a_browser_fragment_gives_its_candidates_and_mids() {
        let f = parse_fragment(FRAGMENT.as_bytes()).unwrap();
        assert_eq!(f.ice_ufrag.as_deref(), Some("EsAw"));
        assert_eq!(f.candidates.len(), 2);
        assert_eq!(f.candidates[0].mid.as_deref(), Some("0"));
        assert!(
            f.candidates[0]
                .candidate
                .starts_with("candidate:1387637174 1 udp")
        );
        assert!(f.end_of_candidates);
        assert!(!is_ice_restart(&f, Some("EsAw")));
        assert!(is_ice_restart(&f, Some("other")));
        let mids = vec!["0".to_string(), "1".to_string()];
        assert_eq!(mline_index(&mids, Some("1")), Some(1));
        assert_eq!(mline_index(&mids, None), Some(0));
        assert_eq!(mline_index(&mids, Some("7")), None);
    }

    #[test]
    fn bad_fragments_are_refused() {
        assert_eq!(parse_fragment(&[0xff]), Err(FragmentError::NotText));
        assert_eq!(
            parse_fragment(b"v=0\r\nhello\r\n"),
            Err(FragmentError::BadLine(1))
        );
        assert_eq!(
            parse_fragment(b"a=candidate:\r\n"),
            Err(FragmentError::EmptyCandidate)
        );
        let many = "a=candidate:1 1 udp 1 192.0.2.1 1 typ host\r\n".repeat(MAX_CANDIDATES + 1);
        assert_eq!(
            parse_fragment(many.as_bytes()),
            Err(FragmentError::TooManyCandidates)
        );
        // End of candidates alone (no new candidate) is fine.
        let f = parse_fragment(b"a=end-of-candidates\r\n").unwrap();
        assert!(f.candidates.is_empty() && f.end_of_candidates);
    }
}
