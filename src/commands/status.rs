//! `stigmer local status`: exit 0 when Temporal serves, 1 when the daemon
//! runs but Temporal is not (yet) healthy, 3 when nothing runs. `--json`
//! prints the daemon's status document (the same as `GET /status`).

use super::{Check, daemon_answer, endpoint_status, home, running};
use crate::cli::StatusArgs;
use crate::exit::Failure;
use crate::model::Code;
use crate::status::{Absence, StatusDoc, Unreachable};
use std::io::Write;

/// Run `status`.
pub fn run(args: &StatusArgs) -> Result<Code, Failure> {
    let home = home(&args.home.home);
    // A daemon answering on its socket is the running instance: no lock
    // probe needed (it is the slower half of this command otherwise).
    if let Some(doc) = daemon_answer(&home, Check::Live) {
        return show(args, doc);
    }
    if !running(&home)? {
        if args.json {
            println!("{}", json(&Unreachable::new(Absence::NotRunning, None)));
        } else {
            println!("Not running (home {}).", home.root().display());
        }
        return Ok(Code::NotRunning);
    }
    // The socket did not answer: the HTTP endpoint may.
    match endpoint_status(&home, Check::Live) {
        Ok(doc) => show(args, doc),
        Err(why) => {
            if args.json {
                println!(
                    "{}",
                    json(&Unreachable::new(Absence::Unknown, Some(why.to_string())))
                );
            } else {
                println!("The daemon is running, but {why}.");
            }
            Ok(Code::NotReady)
        }
    }
}

/// Print the daemon's document (one write) and say whether it serves.
fn show(args: &StatusArgs, doc: StatusDoc) -> Result<Code, Failure> {
    let code = if doc.is_ready() {
        Code::Ok
    } else {
        Code::NotReady
    };
    let text = if args.json {
        // The same document as `GET /status`; the live check made for
        // this command shows only when it failed.
        let mut shown = doc;
        shown.live_check.take_if(|c| c.ok);
        let json = serde_json::to_string(&shown).map_err(|e| Failure::Internal(e.to_string()))?;
        format!("{json}\n")
    } else {
        let mut text = doc.render();
        if let Some(note) = doc.supervisor.other_binary_note() {
            text.push_str(&note);
            text.push('\n');
        }
        text
    };
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|e| Failure::Internal(format!("cannot write to stdout: {e}")))?;
    Ok(code)
}

/// `doc` as one line of JSON.
fn json(doc: &Unreachable) -> String {
    serde_json::to_string(doc).expect("a status document always serializes")
}
