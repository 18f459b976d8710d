//! `stigmer local status`: exit 0 when Temporal serves, 1 when the daemon
//! runs but Temporal is not (yet) healthy, 3 when nothing runs. `--json`
//! prints the daemon's status document (the same as `GET /status`).

use super::{Check, fetch_status, home, running};
use crate::cli::StatusArgs;
use crate::exit::{Code, Failure};
use serde_json::json;

/// Run `status`.
pub fn run(args: &StatusArgs) -> Result<Code, Failure> {
    let home = home(&args.home.home);
    if !running(&home)? {
        {
            if args.json {
                println!(
                    "{}",
                    json!({"version": crate::status::SCHEMA_VERSION, "running": false, "temporal": {"state": "not_running", "ready": false}})
                );
            } else {
                println!("Not running (home {}).", home.root().display());
            }
            return Ok(Code::NotRunning);
        }
    }
    let doc = fetch_status(&home, Check::Live);
    match doc {
        Ok(doc) => {
            if args.json {
                // The same document as `GET /status`; the live check made
                // for this command shows only when it failed.
                let mut shown = doc.clone();
                shown.live_check.take_if(|c| c.ok);
                println!(
                    "{}",
                    serde_json::to_string(&shown).map_err(|e| Failure::Internal(e.to_string()))?
                );
            } else {
                print!("{}", doc.render());
                if let Some(note) = doc.supervisor.other_binary_note() {
                    println!("{note}");
                }
            }
            Ok(if doc.is_ready() {
                Code::Ok
            } else {
                Code::NotReady
            })
        }
        Err(why) => {
            if args.json {
                println!(
                    "{}",
                    json!({"version": crate::status::SCHEMA_VERSION, "running": true, "temporal": {"state": "unknown", "ready": false}, "error": why})
                );
            } else {
                println!("The daemon is running, but {why}.");
            }
            Ok(Code::NotReady)
        }
    }
}
