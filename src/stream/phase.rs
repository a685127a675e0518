//! A session's lifecycle as an explicit state machine. Pure: the session's driver turns
//! timers, the input, shutdown and pipeline events into [`Stimulus`]es and carries out the
//! [`Action`]s; tests feed stimuli with chosen instants, without GStreamer or sockets.
//!
//! ```text
//!  Launching ──PLAYING──▶ Starting ──LadderPlanned──▶ Running ──shutdown / input ended / silence──▶ Draining ──EOS──▶ TearingDown ──NULL──▶ done
//!                             └──────────────shutdown / input ended─────────────────────────────────▲              ▲
//!                  (any stop: EOS, failure, a watchdog) ────────────────────────────────────────────────────────────┘
//! ```
//!
//! Every phase has a deadline, so no state of a session can wait for ever:
//! - **state change** (`pipelines.state_change_timeout_ms`) while Launching (the pipeline going
//!   to PLAYING) and TearingDown (going to NULL): both run off the tokio workers
//!   ([`crate::transcode::off_runtime`]); past the deadline the pipeline is abandoned on its
//!   thread and the session ends, so its stream restarts with a fresh pipeline;
//! - **stall** (`pipelines.stall_timeout_ms` without a segment) while Starting or Running;
//!   a network source waits for its first packet as long as it likes (no stall while
//!   Starting), and one that has gone quiet is the silence rule's, never a stall;
//! - **silence** (network sources, `silence_timeout_ms` without video) ends the stream cleanly;
//!   a source that describes audio but sends none for [`AUDIO_GRACE`] restarts video-only;
//! - **EOS** (`pipelines.eos_timeout_ms`) while Draining measures silence, not drain time: every
//!   segment that still comes out pushes the deadline back (a faster-than-realtime publisher's
//!   backlog is not cut).

use super::session::SessionError;
use crate::transcode::PipelineEvent;
use std::time::Duration;
use tokio::time::Instant;

/// How long a network source may send video without the audio its description promises.
pub const AUDIO_GRACE: Duration = Duration::from_secs(3);
/// A network source with no video for this long is quiet, not hung.
pub const QUIET_SOURCE: Duration = Duration::from_secs(1);

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The pipeline is being set to PLAYING; abandoned at `deadline`.
    Launching { deadline: Instant },
    /// The pipeline runs; no ladder yet (no video caps seen).
    Starting,
    /// The ladder was planned at `planned_at`: segments are expected.
    Running { planned_at: Instant },
    /// Open segments are being finished: EOS was sent (`eos_sent`) or the input ended by
    /// itself; done when the pipeline reports EOS, failed at `deadline`.
    Draining { eos_sent: bool, deadline: Instant },
    /// The pipeline is being set to NULL; abandoned at `deadline`.
    TearingDown { deadline: Instant },
}

impl Phase {
    /// The phase's name in metrics (`zoomate_watchdog_fired_total{phase}`) and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Launching { .. } => "launching",
            Phase::Starting => "starting",
            Phase::Running { .. } => "running",
            Phase::Draining { .. } => "draining",
            Phase::TearingDown { .. } => "tearing_down",
        }
    }
}

/// The timeouts a session runs under.
#[derive(Debug, Clone, Copy)]
pub struct SessionRules {
    pub stall: Duration,
    pub eos_timeout: Duration,
    /// A state change (start to PLAYING, teardown to NULL).
    pub state_change: Duration,
    /// Network (RTP) sources: `Some(silence_timeout)`.
    pub network_silence: Option<Duration>,
}

/// Something that happened to the session.
#[derive(Debug)]
pub enum Stimulus {
    Shutdown,
    /// An operator ended the stream (the API's `end`): finish it as on shutdown.
    EndRequested,
    /// A pushed source's input ended (publisher gone).
    InputEnded,
    /// The periodic silence check of a network source, with what the pipeline observed.
    SilenceCheck {
        audio_seen: Option<bool>,
        video_idle: Option<Duration>,
    },
    /// The stall deadline passed; `video_idle` is how long since the last raw video frame.
    StallTimer {
        video_idle: Option<Duration>,
    },
    /// The EOS deadline passed.
    EosTimer,
    Pipeline(PipelineEvent),
}

/// Why EOS is sent into the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EosReason {
    Shutdown,
    EndRequested,
    Silence { idle: Duration },
}

/// What the driver does next.
#[derive(Debug)]
pub enum Action {
    Continue,
    SendEos(EosReason),
    /// The session is over: `Ok` after a complete EOS.
    Stop(Result<(), SessionError>),
}

#[derive(Debug)]
pub struct SessionMachine {
    phase: Phase,
    rules: SessionRules,
    /// Last sign of life from the pipeline (ladder planned or a segment closed).
    last_progress: Instant,
}

impl SessionMachine {
    /// A session launching its pipeline at `now`.
    pub fn new(rules: SessionRules, now: Instant) -> SessionMachine {
        SessionMachine {
            phase: Phase::Launching {
                deadline: now + rules.state_change,
            },
            rules,
            last_progress: now,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The pipeline reached PLAYING at `now`: the stall watchdog starts counting.
    pub fn launched(&mut self, now: Instant) {
        if matches!(self.phase, Phase::Launching { .. }) {
            self.phase = Phase::Starting;
            self.last_progress = now;
        }
    }

    /// The session stops (whatever the outcome): the pipeline goes to NULL, by the returned
    /// deadline or it is abandoned.
    pub fn tear_down(&mut self, now: Instant) -> Instant {
        if let Phase::TearingDown { deadline } = self.phase {
            return deadline;
        }
        let deadline = now + self.rules.state_change;
        self.phase = Phase::TearingDown { deadline };
        deadline
    }

    /// When the state-change watchdog fires (Launching, TearingDown).
    pub fn state_change_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Launching { deadline } | Phase::TearingDown { deadline } => Some(deadline),
            _ => None,
        }
    }

    /// When the stall watchdog fires, if it is armed.
    pub fn stall_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Starting if self.rules.network_silence.is_some() => None,
            Phase::Starting | Phase::Running { .. } => Some(self.last_progress + self.rules.stall),
            Phase::Launching { .. } | Phase::Draining { .. } | Phase::TearingDown { .. } => None,
        }
    }

    /// When the EOS watchdog fires, if draining.
    pub fn eos_deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Draining { deadline, .. } => Some(deadline),
            _ => None,
        }
    }

    /// Whether a shutdown still changes anything (EOS not yet sent, not tearing down).
    pub fn awaits_shutdown(&self) -> bool {
        !matches!(
            self.phase,
            Phase::Draining { eos_sent: true, .. } | Phase::TearingDown { .. }
        )
    }

    /// Whether the silence check runs (network sources, not draining).
    pub fn checks_silence(&self) -> bool {
        self.rules.network_silence.is_some() && !matches!(self.phase, Phase::Draining { .. })
    }

    pub fn on(&mut self, stimulus: &Stimulus, now: Instant) -> Action {
        match stimulus {
            Stimulus::Shutdown | Stimulus::EndRequested => {
                if !self.awaits_shutdown() {
                    return Action::Continue;
                }
                let deadline = self.eos_deadline().unwrap_or(now + self.rules.eos_timeout);
                self.phase = Phase::Draining {
                    eos_sent: true,
                    deadline,
                };
                Action::SendEos(match stimulus {
                    Stimulus::EndRequested => EosReason::EndRequested,
                    _ => EosReason::Shutdown,
                })
            }
            Stimulus::InputEnded => {
                if matches!(self.phase, Phase::Starting | Phase::Running { .. }) {
                    self.phase = Phase::Draining {
                        eos_sent: false,
                        deadline: now + self.rules.eos_timeout,
                    };
                }
                Action::Continue
            }
            Stimulus::SilenceCheck {
                audio_seen,
                video_idle,
            } => {
                if !self.checks_silence() {
                    return Action::Continue;
                }
                if let Phase::Running { planned_at } = self.phase
                    && now.duration_since(planned_at) >= AUDIO_GRACE
                    && *audio_seen == Some(false)
                {
                    return Action::Stop(Err(SessionError::NoAudio(AUDIO_GRACE)));
                }
                match (self.rules.network_silence, video_idle) {
                    (Some(limit), Some(idle)) if *idle >= limit => {
                        self.phase = Phase::Draining {
                            eos_sent: true,
                            deadline: now + self.rules.eos_timeout,
                        };
                        Action::SendEos(EosReason::Silence { idle: *idle })
                    }
                    _ => Action::Continue,
                }
            }
            Stimulus::StallTimer { video_idle } => {
                if self.stall_deadline().is_none_or(|at| now < at) {
                    return Action::Continue;
                }
                let quiet = self.rules.network_silence.is_some()
                    && video_idle.is_some_and(|idle| idle >= QUIET_SOURCE);
                if quiet {
                    self.last_progress = now;
                    return Action::Continue;
                }
                Action::Stop(Err(SessionError::Stalled(self.rules.stall)))
            }
            Stimulus::EosTimer => match self.eos_deadline() {
                Some(at) if now >= at => {
                    Action::Stop(Err(SessionError::EosTimeout(self.rules.eos_timeout)))
                }
                _ => Action::Continue,
            },
            Stimulus::Pipeline(event) => match event {
                PipelineEvent::Eos => Action::Stop(Ok(())),
                PipelineEvent::Failed(reason) => {
                    Action::Stop(Err(SessionError::Pipeline(reason.clone())))
                }
                PipelineEvent::StoreFull(reason) => {
                    Action::Stop(Err(SessionError::StoreFull(reason.clone())))
                }
                PipelineEvent::LadderPlanned { .. } => {
                    self.last_progress = now;
                    if matches!(self.phase, Phase::Starting) {
                        self.phase = Phase::Running { planned_at: now };
                    }
                    Action::Continue
                }
                PipelineEvent::FragmentClosed { .. } => {
                    self.last_progress = now;
                    if let Phase::Draining { deadline, .. } = &mut self.phase {
                        *deadline = now + self.rules.eos_timeout;
                    }
                    Action::Continue
                }
                _ => Action::Continue,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STALL: Duration = Duration::from_secs(10);
    const EOS: Duration = Duration::from_secs(5);
    const STATE_CHANGE: Duration = Duration::from_secs(3);

    /// A machine whose pipeline reached PLAYING at `t0`.
    fn launched(rules: SessionRules, t0: Instant) -> SessionMachine {
        let mut m = SessionMachine::new(rules, t0);
        m.launched(t0);
        m
    }

    #[test]
    fn every_phase_has_a_deadline_including_launch_and_teardown() {
        let t0 = Instant::now();
        let mut m = SessionMachine::new(rules(false), t0);
        assert_eq!(m.phase().name(), "launching");
        assert_eq!(m.state_change_deadline(), Some(t0 + STATE_CHANGE));
        assert_eq!(m.stall_deadline(), None, "launching is the state change's");
        let t1 = t0 + Duration::from_secs(1);
        m.launched(t1);
        assert_eq!(m.phase(), Phase::Starting);
        assert_eq!(m.stall_deadline(), Some(t1 + STALL), "counted from PLAYING");
        m.on(&planned(), t1);
        assert_eq!(m.phase().name(), "running");
        assert!(m.stall_deadline().is_some());
        m.on(&Stimulus::Shutdown, t1);
        assert_eq!(m.phase().name(), "draining");
        assert!(m.eos_deadline().is_some());
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(m.tear_down(t2), t2 + STATE_CHANGE);
        assert_eq!(m.phase().name(), "tearing_down");
        assert_eq!(m.state_change_deadline(), Some(t2 + STATE_CHANGE));
        assert_eq!(m.tear_down(t2 + EOS), t2 + STATE_CHANGE, "one deadline");
        assert!(!m.awaits_shutdown());
        assert_eq!((m.stall_deadline(), m.eos_deadline()), (None, None));
    }

    #[test]
    fn a_full_disk_stops_the_session_as_store_full() {
        let t0 = Instant::now();
        let mut m = launched(rules(false), t0);
        assert!(matches!(
            m.on(
                &Stimulus::Pipeline(PipelineEvent::StoreFull("x".into())),
                t0
            ),
            Action::Stop(Err(SessionError::StoreFull(_)))
        ));
    }

    fn rules(network: bool) -> SessionRules {
        SessionRules {
            stall: STALL,
            eos_timeout: EOS,
            state_change: STATE_CHANGE,
            network_silence: network.then_some(Duration::from_secs(2)),
        }
    }

    fn planned() -> Stimulus {
        Stimulus::Pipeline(PipelineEvent::LadderPlanned {
            renditions: vec![],
            source_width: 1280,
            source_height: 720,
            anchor_wall_ms: 0,
            separate_audio: false,
            first_sequence: None,
        })
    }

    fn closed() -> Stimulus {
        Stimulus::Pipeline(PipelineEvent::FragmentClosed {
            rendition: "720p".into(),
            location: "x".into(),
            running_time_ns: 0,
            exact_end: true,
        })
    }

    #[test]
    fn shutdown_drains_until_eos_and_sends_eos_once() {
        let t0 = Instant::now();
        let mut m = launched(rules(false), t0);
        m.on(&planned(), t0);
        assert!(matches!(m.phase(), Phase::Running { .. }));
        assert!(matches!(
            m.on(&Stimulus::Shutdown, t0),
            Action::SendEos(EosReason::Shutdown)
        ));
        assert!(!m.awaits_shutdown());
        assert!(matches!(m.on(&Stimulus::Shutdown, t0), Action::Continue));
        assert_eq!(m.stall_deadline(), None, "no stall watchdog while draining");
        assert_eq!(m.eos_deadline(), Some(t0 + EOS));
        assert!(matches!(
            m.on(&Stimulus::Pipeline(PipelineEvent::Eos), t0),
            Action::Stop(Ok(()))
        ));
    }

    #[test]
    fn an_end_request_drains_like_shutdown_and_a_later_shutdown_changes_nothing() {
        let t0 = Instant::now();
        let mut m = SessionMachine::new(rules(false), t0);
        m.on(&planned(), t0);
        assert!(matches!(
            m.on(&Stimulus::EndRequested, t0),
            Action::SendEos(EosReason::EndRequested)
        ));
        assert!(matches!(m.on(&Stimulus::Shutdown, t0), Action::Continue));
        assert!(matches!(
            m.on(&Stimulus::EndRequested, t0),
            Action::Continue
        ));
        assert_eq!(m.eos_deadline(), Some(t0 + EOS));
        assert!(matches!(
            m.on(&Stimulus::Pipeline(PipelineEvent::Eos), t0),
            Action::Stop(Ok(()))
        ));
    }

    #[test]
    fn the_eos_watchdog_measures_silence_not_drain_time() {
        let t0 = Instant::now();
        let mut m = launched(rules(false), t0);
        m.on(&planned(), t0);
        m.on(&Stimulus::InputEnded, t0);
        assert!(
            m.awaits_shutdown(),
            "input ended by itself: EOS not sent yet"
        );
        // A backlog keeps producing segments well past the first deadline.
        for s in 1..=4 {
            m.on(&closed(), t0 + EOS * s);
        }
        assert!(matches!(
            m.on(&Stimulus::EosTimer, t0 + EOS * 4 + EOS / 2),
            Action::Continue
        ));
        assert!(matches!(
            m.on(&Stimulus::EosTimer, t0 + EOS * 5),
            Action::Stop(Err(SessionError::EosTimeout(_)))
        ));
    }

    #[test]
    fn a_pipeline_without_segments_stalls_but_a_waiting_network_source_does_not() {
        let t0 = Instant::now();
        let mut m = launched(rules(false), t0);
        assert_eq!(m.stall_deadline(), Some(t0 + STALL));
        m.on(&closed(), t0 + STALL / 2);
        assert!(matches!(
            m.on(&Stimulus::StallTimer { video_idle: None }, t0 + STALL),
            Action::Continue
        ));
        assert!(matches!(
            m.on(&Stimulus::StallTimer { video_idle: None }, t0 + STALL * 2),
            Action::Stop(Err(SessionError::Stalled(_)))
        ));

        let mut n = launched(rules(true), t0);
        assert_eq!(n.stall_deadline(), None, "waiting for the first packet");
        n.on(&planned(), t0);
        // Quiet (no video for a while): the silence rule's, not a stall.
        assert!(matches!(
            n.on(
                &Stimulus::StallTimer {
                    video_idle: Some(QUIET_SOURCE)
                },
                t0 + STALL
            ),
            Action::Continue
        ));
        assert_eq!(n.stall_deadline(), Some(t0 + STALL * 2));
    }

    #[test]
    fn silence_ends_a_network_stream_and_missing_audio_restarts_it() {
        let t0 = Instant::now();
        let mut m = launched(rules(true), t0);
        m.on(&planned(), t0);
        let check = |audio, idle| Stimulus::SilenceCheck {
            audio_seen: audio,
            video_idle: idle,
        };
        assert!(matches!(
            m.on(
                &check(Some(false), Some(Duration::ZERO)),
                t0 + AUDIO_GRACE / 2
            ),
            Action::Continue
        ));
        assert!(matches!(
            m.on(&check(Some(false), Some(Duration::ZERO)), t0 + AUDIO_GRACE),
            Action::Stop(Err(SessionError::NoAudio(_)))
        ));

        let mut s = launched(rules(true), t0);
        s.on(&planned(), t0);
        let idle = Duration::from_secs(3);
        assert!(matches!(
            s.on(&check(Some(true), Some(idle)), t0 + idle),
            Action::SendEos(EosReason::Silence { .. })
        ));
        assert!(!s.checks_silence());
        assert!(!s.awaits_shutdown());
    }
}
