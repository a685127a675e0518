//! The restart policy of configured sources (pure: no clock, no I/O).

use crate::stream::session::SessionError;
use std::time::Duration;

/// Pause before restarting a configured stream whose pipeline failed.
pub const RESTART_BACKOFF: Duration = Duration::from_secs(2);

/// What the supervisor does after a configured source's session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Shutdown: the source is not restarted.
    Stop,
    /// Start it again after `delay`, video-only or not.
    After { delay: Duration, video_only: bool },
}

/// The restart policy of configured sources (pure). A source that ended normally after running
/// a while (an RTP sender gone quiet) listens again at once, so a returning sender loses
/// nothing, and may send audio again; a source that describes audio but sends none restarts at
/// once video-only; a failure, or an end that comes straight away, waits [`RESTART_BACKOFF`] so
/// a broken source cannot spin.
pub fn restart_policy(
    outcome: &Result<(), SessionError>,
    ran_for: Duration,
    video_only: bool,
    shutting_down: bool,
) -> Restart {
    match outcome {
        _ if shutting_down => Restart::Stop,
        Ok(()) if ran_for >= RESTART_BACKOFF => Restart::After {
            delay: Duration::ZERO,
            video_only: false,
        },
        Err(SessionError::NoAudio(_)) if !video_only => Restart::After {
            delay: Duration::ZERO,
            video_only: true,
        },
        _ => Restart::After {
            delay: RESTART_BACKOFF,
            video_only,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restart_policy() {
        let long = RESTART_BACKOFF * 3;
        let quick = RESTART_BACKOFF / 4;
        assert_eq!(restart_policy(&Ok(()), long, false, true), Restart::Stop);
        assert_eq!(
            restart_policy(&Err(SessionError::Pipeline("x".into())), long, false, true),
            Restart::Stop
        );
        // A quiet sender went away after a while: listen again at once, with audio again.
        assert_eq!(
            restart_policy(&Ok(()), long, true, false),
            Restart::After {
                delay: Duration::ZERO,
                video_only: false
            }
        );
        // An end straight away, or a failure: back off.
        assert_eq!(
            restart_policy(&Ok(()), quick, false, false),
            Restart::After {
                delay: RESTART_BACKOFF,
                video_only: false
            }
        );
        let failed = Err(SessionError::Stalled(Duration::from_secs(10)));
        assert_eq!(
            restart_policy(&failed, long, true, false),
            Restart::After {
                delay: RESTART_BACKOFF,
                video_only: true
            }
        );
        // Audio described but never sent: once video-only at once; then it is a failure.
        let no_audio = Err(SessionError::NoAudio(Duration::from_secs(3)));
        assert_eq!(
            restart_policy(&no_audio, quick, false, false),
            Restart::After {
                delay: Duration::ZERO,
                video_only: true
            }
        );
        assert_eq!(
            restart_policy(&no_audio, quick, true, false),
            Restart::After {
                delay: RESTART_BACKOFF,
                video_only: true
            }
        );
    }
}
