//! `stigmer local config`: the effective configuration (flags, environment
//! and the file merged) printed as a configuration file, and checked as
//! `start` checks it: the same errors and exit codes. A program that is
//! not installed is a warning here and an error at start.

use super::home;
use crate::cli::StartArgs;
use crate::config::Effective;
use crate::exit::Failure;
use crate::model::Code;

/// Run `config`.
pub fn run(args: &StartArgs) -> Result<Code, Failure> {
    let home = home(&args.home.home);
    let effective = Effective::load(&home, &args.options, &args.explicit, args.config.as_deref())?;
    let cfg = effective.check(home)?;
    if let Some(file) = &cfg.file {
        println!("# from {}, flags and environment", file.display());
    }
    print!("{}", effective.to_toml());
    // What the stack's Temporal resolved to (credentials never shown).
    let c = cfg.connection();
    let how = match &cfg.attach {
        None => "the managed dev server".to_string(),
        Some(a) => match &a.profile {
            Some(p) => format!(
                "attached through profile {} of {}",
                p.name,
                p.file.display()
            ),
            None => "attached".to_string(),
        },
    };
    println!(
        "\n# Temporal: {how}, at {}, namespace {}, TLS {}, credentials {}",
        c.endpoint.address,
        c.namespace,
        if c.tls() { "on" } else { "off" },
        if c.has_credentials() { "set" } else { "none" },
    );
    if let Err(e) = cfg.resolve_temporal_bin() {
        eprintln!("warning: {e}");
    }
    for missing in cfg.missing_programs() {
        eprintln!("warning: {missing}");
    }
    Ok(Code::Ok)
}
