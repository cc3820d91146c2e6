//! Man pages and shell completions from the clap definitions, written at package build time
//! by `rearguard-docs DIR` (src/bin/rearguard-docs.rs; scripts/package.sh), which compiles
//! the same command tree as `rearguard`, so the pages always describe the shipped binary.

use anyhow::Context;
use clap_complete::Shell;
use std::path::Path;

pub fn generate(cmd: clap::Command, dir: &Path) -> anyhow::Result<()> {
    let man = dir.join("man");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let mut cmd = cmd;
    cmd.build();
    man_pages(&cmd, &man)?;
    for (shell, file) in [(Shell::Bash, "rearguard"), (Shell::Zsh, "_rearguard"), (Shell::Fish, "rearguard.fish")] {
        let path = completions.join(file);
        let mut out = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        clap_complete::generate(shell, &mut cmd.clone(), "rearguard", &mut out);
    }
    Ok(())
}

/// rearguard.1, and rearguard-agent.1, rearguard-disk-init.1, … for every visible subcommand.
/// Titles come from the display names `Command::build` gives subcommands ("rearguard-disk-init").
fn man_pages(cmd: &clap::Command, dir: &Path) -> anyhow::Result<()> {
    let name = cmd.get_display_name().unwrap_or(cmd.get_name());
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        man_pages(sub, dir)?;
    }
    Ok(())
}
