//! Command-line plumbing both programs share: clap's exits, standard output that a closed pipe
//! ends quietly, the `completions` and `man` subcommands, and event-name completion.
//!
//! A closed pipe is not an error (`receiver export | head`, as ripgrep does it): every result
//! line goes through [`stdout`] or the [`out!`](crate::out) / [`outln!`](crate::outln)
//! macros, which remember a broken pipe; [`failure`] then ends the process with status 0 and
//! nothing on standard error.

use std::ffi::OsStr;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use clap::builder::{PossibleValue, StringValueParser, TypedValueParser};

use crate::logging::tell;

/// Set when a write to standard output met a closed pipe; from then on nothing the process
/// still has to say matters to anyone.
static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// `command` with the value of every environment variable hidden from its help texts, in
/// every subcommand: `[env: RECEIVER_STORE]` instead of `[env: RECEIVER_STORE=postgres://u:PW@…]`.
///
/// Variables hold passwords, tokens and URLs with credentials, and the README recommends them
/// over flags; one rule for every argument means a flag added later cannot leak either. Both
/// programs build their command (for parsing, `completions` and `man`) through this.
pub fn hide_env_values(command: clap::Command) -> clap::Command {
    command
        .mut_args(|arg| arg.hide_env_values(true))
        .mut_subcommands(hide_env_values)
}

/// Prints clap's message (help and version on standard output, usage errors on standard error)
/// and gives the exit status clap asks for: 0 for help and version, 2 for usage errors.
pub fn clap_exit(error: &clap::Error) -> ExitCode {
    let _ = error.print();
    ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(2))
}

/// The exit status of a command that failed: 0, quietly, when standard output was closed by
/// its reader (the error is then only that pipe, or what followed from it); else
/// `error: ` and the cause chain on standard error, and `status`.
pub fn failure(error: &anyhow::Error, status: u8) -> ExitCode {
    if stdout_closed() {
        return ExitCode::SUCCESS;
    }
    tell("ERROR", format_args!("error: {error:#}"));
    ExitCode::from(status)
}

/// Whether a write to standard output met a closed pipe.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

/// Standard output for a command's results (see the module docs).
pub fn stdout() -> Stdout {
    Stdout(io::stdout())
}

/// Standard output that remembers a closed pipe; made by [`stdout`].
#[derive(Debug)]
pub struct Stdout(io::Stdout);

impl Stdout {
    fn note<T>(result: io::Result<T>) -> io::Result<T> {
        if let Err(error) = &result {
            if error.kind() == io::ErrorKind::BrokenPipe {
                STDOUT_CLOSED.store(true, Ordering::Relaxed);
            }
        }
        result
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Self::note(self.0.write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        Self::note(self.0.flush())
    }
}

/// Writes to standard output and flushes, for [`out!`](crate::out) and
/// [`outln!`](crate::outln).
///
/// # Errors
/// The write failed (a closed pipe is also remembered for [`failure`]).
pub fn write_stdout(text: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut out = stdout();
    out.write_fmt(text)
        .and_then(|()| out.flush())
        .context("writing to standard output")
}

/// `print!` that returns an error instead of panicking when standard output is closed.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(::std::format_args!($($arg)*))
    };
}

/// `println!` that returns an error instead of panicking when standard output is closed.
#[macro_export]
macro_rules! outln {
    () => {
        $crate::cli::write_stdout(::std::format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(::std::format_args!("{}\n", ::std::format_args!($($arg)*)))
    };
}

/// `PROGRAM completions SHELL`: the completion script, printed on standard output.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, powershell or elvish.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

impl CompletionsArgs {
    /// Prints the completion script of `command` for the shell asked for.
    ///
    /// # Errors
    /// Standard output cannot be written.
    pub fn print(&self, command: clap::Command) -> anyhow::Result<()> {
        out!("{}", completion_script(self.shell, command))
    }
}

/// The completion script of `command` for `shell`, naming the program by the command's name
/// (so the copies of the programs the tests build complete as `receiver` and `sender`).
pub fn completion_script(shell: clap_complete::Shell, mut command: clap::Command) -> String {
    let name = command.get_name().to_owned();
    // Rendered into memory first: clap_complete panics when its writer fails.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut script);
    String::from_utf8_lossy(&script).into_owned()
}

/// `PROGRAM man [--out DIR]`: the manual pages, from the same definitions as `--help`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Write a page for the program and one for each subcommand (`PROGRAM-SUB.1`) into this
    /// directory, created when missing, and print their paths; without it, print the
    /// program's page on standard output (`PROGRAM man | man -l -`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

impl ManArgs {
    /// Writes the pages of `command` as asked.
    ///
    /// # Errors
    /// The directory or a page cannot be written, or standard output cannot.
    pub fn write(&self, command: clap::Command) -> anyhow::Result<()> {
        let Some(dir) = &self.out else {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .context("rendering the manual page")?;
            return stdout()
                .write_all(&page)
                .and_then(|()| stdout().flush())
                .context("writing to standard output");
        };
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // As clap_mangen::generate_to does it, keeping the paths to print them.
        let mut command = command.disable_help_subcommand(true);
        command.build();
        let mut written = Vec::new();
        man_pages(command, dir, &mut written)
            .with_context(|| format!("writing manual pages to {}", dir.display()))?;
        for path in written {
            outln!("{}", path.display())?;
        }
        Ok(())
    }
}

/// Writes the page of `command` and, first, those of its visible subcommands, depth first,
/// each whole or not at all (see [`crate::files`]).
fn man_pages(command: clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for subcommand in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        man_pages(subcommand.clone(), dir, written)?;
    }
    let page = clap_mangen::Man::new(command);
    let path = dir.join(page.get_filename());
    crate::files::write_atomically(&path, |out| Ok(page.render(out)?))?;
    written.push(path);
    Ok(())
}

/// `--event-name`, `--since`, `--until`: which events or requests a reading command takes.
/// What the times are compared with (an event's own timestamp, a request's receive time) is
/// said in each command's help.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Selection {
    /// Only those with an event of this name (repeat for several).
    #[arg(
        long = "event-name",
        value_name = "NAME",
        value_parser = event_names(&[]),
        hide_possible_values = true
    )]
    pub event_names: Vec<String>,
    /// Only from this time on: RFC 3339, a date (midnight UTC), or epoch ms or s.
    #[arg(long, value_name = "TIME", value_parser = crate::parse::instant_ms)]
    pub since: Option<i64>,
    /// Only before this time (same forms as --since).
    #[arg(long, value_name = "TIME", value_parser = crate::parse::instant_ms)]
    pub until: Option<i64>,
}

/// The value parser of an argument that takes an event name: any text is accepted (unknown
/// names are for the command to judge), and the catalogue's names, plus `extra`, are offered
/// to shell completion. Pair it with `hide_possible_values = true`: 31 names do not belong in
/// `--help`.
pub fn event_names(extra: &'static [&'static str]) -> EventNames {
    EventNames { extra }
}

/// See [`event_names`].
#[derive(Debug, Clone, Copy)]
pub struct EventNames {
    extra: &'static [&'static str],
}

impl TypedValueParser for EventNames {
    type Value = String;

    fn parse_ref(
        &self,
        command: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<String, clap::Error> {
        StringValueParser::new().parse_ref(command, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        let names = verify::CATALOG.iter().map(|kind| kind.name);
        Some(Box::new(
            names
                .chain(self.extra.iter().copied())
                .map(PossibleValue::new),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    #[command(name = "demo")]
    struct Demo {
        #[arg(long, value_parser = event_names(&["all"]), hide_possible_values = true)]
        event: Option<String>,
    }

    #[test]
    fn event_names_accept_any_text_and_offer_the_catalogue() {
        let demo = Demo::try_parse_from(["demo", "--event", "NOT_IN_THE_CATALOGUE"]).unwrap();
        assert_eq!(demo.event.as_deref(), Some("NOT_IN_THE_CATALOGUE"));
        let command = <Demo as clap::CommandFactory>::command();
        let arg = command
            .get_arguments()
            .find(|arg| arg.get_id() == "event")
            .unwrap();
        let offered: Vec<String> = arg
            .get_possible_values()
            .iter()
            .map(|value| value.get_name().to_owned())
            .collect();
        let mut expected: Vec<String> = verify::CATALOG.iter().map(|k| k.name.to_owned()).collect();
        expected.push("all".to_owned());
        assert_eq!(offered, expected);
        let script = completion_script(clap_complete::Shell::Fish, command);
        assert!(script.contains("COURSE_ENROLLMENT"), "{script}");
    }
}
