//! `rearguard-docs DIR`: writes rearguard's man pages (DIR/man) and bash/zsh/fish completions
//! (DIR/completions), for scripts/package.sh. Not shipped: a binary of its own so that the
//! man and completion generators are not linked into the agent, whose resident memory is
//! mostly its own code (README "Footprint").

// The command tree is main.rs's own (`Cli`); the rest of that file is unused here.
#[allow(dead_code)]
#[path = "../main.rs"]
mod rearguard;

#[path = "../docs.rs"]
mod docs;

use clap::CommandFactory;

fn main() -> anyhow::Result<()> {
    let dir = match std::env::args_os().nth(1) {
        Some(d) if std::env::args_os().len() == 2 => std::path::PathBuf::from(d),
        _ => anyhow::bail!("usage: rearguard-docs DIR (man/ and completions/ are created in it)"),
    };
    docs::generate(rearguard::Cli::command().version(env!("CARGO_PKG_VERSION")), &dir)
}
