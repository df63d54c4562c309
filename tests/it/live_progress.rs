//! `orch run`'s live lines on a terminal (src/cli/progress.rs), seen through tmux: a line per
//! step in flight and the totals line. `#[ignore]`d because it needs tmux, which
//! `scripts/test.sh` installs and then runs it with `--include-ignored`; run that way without
//! tmux, it fails, saying so.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::cli::CALLER_ENV;
use crate::common::temp_dir;

const SCRIPT: &str = r#"include "std/models.orch"

agent w { model: haiku, max_tokens: 100 }

workflow main() -> text <budget $1.00> {
  parallel {
    alpha = w("one")
    beta = w("two")
  }
  return "{alpha} {beta}"
}
"#;

/// A tmux server of this test's own (its own socket), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        for name in CALLER_ENV {
            c.env_remove(name);
        }
        c.env_remove("NO_COLOR");
        c
    }

    fn pane(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "orch"])
            .output()
            .expect("tmux capture-pane runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

#[test]
#[ignore = "needs tmux; scripts/test.sh installs it and runs this with --include-ignored"]
fn a_terminal_shows_a_line_per_step_in_flight_and_the_totals() {
    let found = Command::new("tmux").arg("-V").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "tmux is not installed: scripts/test.sh installs it (apt-get install tmux)"
    );
    let tmp = temp_dir();
    let script = tmp.path().join("live.orch");
    std::fs::write(&script, SCRIPT).unwrap();
    let tmux = Tmux {
        socket: format!("orch-live-test-{}", std::process::id()),
    };
    // The run's simulated calls take a minute: long enough to be seen in flight, whatever the
    // machine's load. The pane stays after the run, for the capture.
    let run = format!(
        "cd {} && {} run {} --simulate --sim-latency 60s --no-journal; sleep 600",
        env!("CARGO_MANIFEST_DIR"),
        env!("CARGO_BIN_EXE_orch"),
        script.display()
    );
    let started = tmux
        .cmd()
        .args([
            "new-session",
            "-d",
            "-s",
            "orch",
            "-x",
            "120",
            "-y",
            "30",
            &run,
        ])
        .status()
        .expect("tmux runs");
    assert!(started.success(), "tmux new-session failed");
    // Poll the pane until both steps' live lines and the totals are on it; the bound only
    // catches a real breakage (nothing drawn at all).
    let deadline = Instant::now() + Duration::from_secs(50);
    let mut pane = String::new();
    let shown = |p: &str| {
        let step_line = |name: &str| {
            p.lines().any(|l| {
                l.contains(name)
                    && l.contains("haiku")
                    && l.trim_end().ends_with('s')
                    && !l.contains('▸')
            })
        };
        step_line("alpha") && step_line("beta") && p.contains("0/2 steps done")
    };
    while Instant::now() < deadline {
        pane = tmux.pane();
        if shown(&pane) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(shown(&pane), "no live lines on the terminal:\n{pane}");
    assert!(pane.contains("$1.00 budget"), "{pane}");
}
