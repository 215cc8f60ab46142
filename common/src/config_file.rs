//! `--config FILE` for both programs (SPEC section 9): a TOML file whose keys are the long flag
//! names, read once at start and turned into the defaults of the matching flags.
//!
//! ```toml
//! listen = "0.0.0.0:8080"
//! signature-file = ["/etc/receiver/a.json", "/etc/receiver/b.json"]
//! max-body = "1MiB"          # durations and sizes as the flags read them, or numbers
//! allow-private-targets = true
//! ```
//!
//! Why defaults: clap already ranks a flag above its environment variable above its default, so
//! a file value put in the default's place gives "flag > environment > file > default" with no
//! precedence code of our own, for every flag, including flags added later.
//!
//! One file serves every subcommand of a program (`sender run` and `sender admin` alike): a
//! key applies to every flag of that long name, in whichever subcommand it is, that its value
//! suits (a list goes to the flags that take several values). A key that is no flag anywhere,
//! or whose value suits none of its flags (a list for a flag that takes one value, a table, a
//! value the flag's own parser refuses) is a configuration error naming the key and its line,
//! checked before anything runs, whatever the subcommand (so a typo never passes as "not used
//! by this command").
//!
//! Secrets (passwords, tokens, URLs with a password) may sit in the file: their values never
//! appear in an error or in `--help` (every default that came from the file is hidden there),
//! and [`Loaded::warn_if_readable_by_others`] warns when such a file is not owner-only.
//!
//! What clap checks only for flags and environment variables, not for defaults: `requires`,
//! `conflicts_with` and groups. A program whose flags must come in pairs checks the pair
//! itself (the receiver's `--tls-cert` / `--tls-key`).

use std::collections::BTreeSet;
use std::error::Error as _;
use std::ffi::{OsStr, OsString};
use std::ops::Range;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Arg, ArgAction, Command};
use toml::de::{DeTable, DeValue};

/// The id and long name of the flag that names the file.
const FLAG: &str = "config";

/// `command` with `--config FILE` (environment variable `env_var`), a global flag: one file
/// for every subcommand. Both programs add it where they build their command, so `--help`,
/// the completions and the manual pages show it.
pub fn add_flag(command: Command, env_var: &'static str) -> Command {
    command.arg(
        Arg::new(FLAG)
            .long(FLAG)
            .env(env_var)
            .global(true)
            .value_name("FILE")
            .value_parser(clap::value_parser!(PathBuf))
            .help(
                "Read settings from this TOML file: keys are the long flag names \
                 (listen = \"0.0.0.0:8080\", signature-file = [\"a.json\"]); a flag or \
                 environment variable given as well wins over the file",
            ),
    )
}

/// A config file that was read: where it is, and which of its keys hold a secret.
#[derive(Debug)]
pub struct Loaded {
    path: PathBuf,
    secret_keys: Vec<String>,
}

impl Loaded {
    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The keys of the file whose values are secrets (passwords, tokens, URLs with a
    /// password), in file order; their values are never shown.
    pub fn secret_keys(&self) -> &[String] {
        &self.secret_keys
    }

    /// Logs a warning when the file holds a secret and users other than its owner may read
    /// it (the file is used all the same: refusing would stop a service over a mode that a
    /// `chmod` fixes). Call it once logging is set up.
    pub fn warn_if_readable_by_others(&self) {
        if !self.secret_keys.is_empty() && crate::files::readable_by_others(&self.path) {
            tracing::warn!(
                file = %self.path.display(),
                keys = %self.secret_keys.join(", "),
                "the config file holds secrets and can be read by other users of this machine: \
                 `chmod 600` it"
            );
        }
    }
}

/// Reads the config file named by `--config` on this process's command line, or else by the
/// flag's environment variable (see [`add_flag`]), and gives `command` with the file's values
/// as the defaults of the matching flags; `command` unchanged and `None` when no file is
/// named. `secret_keys` are the keys whose values are secrets whatever they look like
/// (`basic-password`); URLs with a password are found by their form.
///
/// # Errors
/// The file cannot be read or is not TOML, or a key is no flag, or a value does not suit its
/// flag: a configuration error (exit 2), naming the file, the line and the key.
pub fn load(command: Command, secret_keys: &[&str]) -> anyhow::Result<(Command, Option<Loaded>)> {
    let from_environment = command
        .get_arguments()
        .find(|arg| arg.get_id() == FLAG)
        .and_then(Arg::get_env)
        .and_then(std::env::var_os);
    let Some(path) = named_file(std::env::args_os().skip(1), from_environment) else {
        return Ok((command, None));
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the config file {}", path.display()))?;
    let (command, loaded) = apply(command, &path, &text, secret_keys)?;
    Ok((command, Some(loaded)))
}

/// [`load`] with the file's text given: `command` with the values of `text` (read from
/// `path`, which errors name) as its flags' defaults.
///
/// # Errors
/// As [`load`], but for reading the file.
pub fn apply(
    command: Command,
    path: &Path,
    text: &str,
    secret_keys: &[&str],
) -> anyhow::Result<(Command, Loaded)> {
    let place = |span: Range<usize>| {
        format!(
            "config file {}, line {}",
            path.display(),
            line_of(text, span.start)
        )
    };
    let table = DeTable::parse(text).map_err(|error| {
        // The message alone: toml's full rendering quotes the line, which may hold a secret.
        anyhow::anyhow!(
            "{}: {}",
            place(error.span().unwrap_or(0..0)),
            error.message()
        )
    })?;
    let entries: Vec<Entry<'_, '_>> = table
        .get_ref()
        .iter()
        .map(|(key, value)| Entry {
            key: key.get_ref(),
            key_span: key.span(),
            value: value.get_ref(),
            value_span: value.span(),
            secret: secret_keys.contains(&key.get_ref().as_ref())
                || strings_in(value.get_ref()).any(crate::postgres::url_has_password),
        })
        .collect();

    // Built, the command shows what parsing sees: global flags in every subcommand, and
    // clap's own --help and --version.
    let mut built = command.clone();
    built.build();
    let mut flags = Vec::new();
    flags_of(&built, &mut flags);
    let mut problems = Vec::new();
    for entry in &entries {
        check(entry, &flags, &mut problems);
    }
    if !problems.is_empty() {
        // The same mistake is found once per flag of that name (the receiver's `listen` flags
        // are both at the top and under `listen`): said once, in file order.
        problems.sort_by(|a, b| (a.at, &a.message).cmp(&(b.at, &b.message)));
        problems.dedup();
        let lines: Vec<String> = problems
            .iter()
            .map(|problem| format!("{}: {}", place(problem.at..problem.at), problem.message))
            .collect();
        anyhow::bail!("{}", lines.join("\n"));
    }

    let mut secret_keys: Vec<(usize, String)> = entries
        .iter()
        .filter(|entry| entry.secret)
        .map(|entry| (entry.key_span.start, entry.key.to_owned()))
        .collect();
    secret_keys.sort();
    let loaded = Loaded {
        path: path.to_owned(),
        secret_keys: secret_keys.into_iter().map(|(_, key)| key).collect(),
    };
    Ok((with_defaults(command, &entries), loaded))
}

/// The file named on the command line (`--config FILE` or `--config=FILE`, before any `--`),
/// else by the environment (an empty variable names none). A `--config` with no value names
/// none either: clap then says that the flag needs one.
fn named_file(
    args: impl IntoIterator<Item = OsString>,
    from_environment: Option<OsString>,
) -> Option<PathBuf> {
    let long = format!("--{FLAG}");
    let with_value = format!("--{FLAG}=");
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if arg == long.as_str() {
            // As clap reads it: a following flag is not the value.
            return args
                .next()
                .filter(|value| !value.as_bytes().starts_with(b"-"))
                .map(PathBuf::from);
        }
        if let Some(value) = arg.as_bytes().strip_prefix(with_value.as_bytes()) {
            return Some(PathBuf::from(OsStr::from_bytes(value)));
        }
    }
    from_environment
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
}

/// One `key = value` of the file.
struct Entry<'t, 'i> {
    key: &'t str,
    key_span: Range<usize>,
    value: &'t DeValue<'i>,
    value_span: Range<usize>,
    /// Its value must never be shown.
    secret: bool,
}

/// Something wrong in the file, at a byte offset.
#[derive(Debug, PartialEq, Eq)]
struct Problem {
    at: usize,
    message: String,
}

/// What a file value becomes for one flag.
enum FileDefault {
    /// A switch (`--json`): on or off.
    Switch(bool),
    /// The values a flag taking values gets, as if typed after it.
    Values(Vec<String>),
}

/// Every flag with a long name in `command` and its subcommands.
fn flags_of<'c>(command: &'c Command, flags: &mut Vec<&'c Arg>) {
    flags.extend(
        command
            .get_arguments()
            .filter(|arg| arg.get_long().is_some()),
    );
    for subcommand in command.get_subcommands() {
        flags_of(subcommand, flags);
    }
}

/// Checks `entry` against every flag of its name, adding what is wrong to `problems`.
fn check(entry: &Entry<'_, '_>, flags: &[&Arg], problems: &mut Vec<Problem>) {
    let key = entry.key;
    let matching: Vec<&Arg> = flags
        .iter()
        .copied()
        .filter(|arg| arg.get_long() == Some(key))
        .collect();
    let at_key = |message: String| Problem {
        at: entry.key_span.start,
        message,
    };
    if key == FLAG {
        problems.push(at_key(format!(
            "`{key}` cannot be set in a config file (it names the file)"
        )));
        return;
    }
    if matching.is_empty() {
        let known: BTreeSet<&str> = flags.iter().filter_map(|arg| arg.get_long()).collect();
        let hint = closest(key, known.iter().copied())
            .map(|name| format!(" (did you mean `{name}`?)"))
            .unwrap_or_default();
        problems.push(at_key(format!(
            "unknown key `{key}`: no flag --{key}{hint}"
        )));
        return;
    }
    // The value must suit one of them at least; the others keep their own default.
    let mismatches: Vec<Problem> = matching
        .iter()
        .filter_map(|arg| suited(entry, arg).err())
        .collect();
    if mismatches.len() == matching.len() {
        problems.extend(mismatches);
    }
}

/// What `entry`'s value becomes for `arg`: of the right shape, and accepted by the flag's own
/// value parser. Or where and why it does not suit the flag.
fn suited(entry: &Entry<'_, '_>, arg: &Arg) -> Result<FileDefault, Problem> {
    let default = default_for(entry, arg).map_err(|(at, message)| Problem { at, message })?;
    if let FileDefault::Values(values) = &default {
        for value in split_like_clap(arg, values) {
            parse_like_clap(entry, arg, &value).map_err(|message| Problem {
                at: entry.value_span.start,
                message,
            })?;
        }
    }
    Ok(default)
}

/// What `entry`'s value becomes for `arg`, or where and why it does not suit it.
fn default_for(entry: &Entry<'_, '_>, arg: &Arg) -> Result<FileDefault, (usize, String)> {
    let key = entry.key;
    let here = |message: String| (entry.value_span.start, message);
    match arg.get_action() {
        ArgAction::SetTrue | ArgAction::SetFalse => match entry.value {
            DeValue::Boolean(on) => Ok(FileDefault::Switch(*on)),
            other => Err(here(format!(
                "`{key}` is a switch: write true or false, not {}",
                kind_of(other)
            ))),
        },
        ArgAction::Set => match entry.value {
            DeValue::Array(_) => Err(here(format!("`{key}` takes one value, not a list"))),
            scalar => scalar_text(key, scalar)
                .map(|text| FileDefault::Values(vec![text]))
                .map_err(here),
        },
        ArgAction::Append => match entry.value {
            DeValue::Array(items) => items
                .iter()
                .map(|item| {
                    scalar_text(key, item.get_ref()).map_err(|message| (item.span().start, message))
                })
                .collect::<Result<Vec<String>, _>>()
                .map(FileDefault::Values),
            scalar => scalar_text(key, scalar)
                .map(|text| FileDefault::Values(vec![text]))
                .map_err(here),
        },
        // --help, --version, counters: nothing a file should hold.
        _ => Err((
            entry.key_span.start,
            format!("`{key}` cannot be set in a config file"),
        )),
    }
}

/// The text a flag would get for one TOML value: strings as they are, numbers in decimal,
/// dates as written; booleans, lists and tables are not values of a flag that takes one.
fn scalar_text(key: &str, value: &DeValue<'_>) -> Result<String, String> {
    match value {
        DeValue::String(text) => Ok(text.to_string()),
        DeValue::Integer(integer) => i128::from_str_radix(integer.as_str(), integer.radix())
            .map(|number| number.to_string())
            .map_err(|_| format!("`{key}`: the number is too large")),
        DeValue::Float(float) => Ok(float.as_str().to_owned()),
        DeValue::Datetime(datetime) => Ok(datetime.to_string()),
        DeValue::Boolean(_) => Err(format!("`{key}` takes a value, not true or false")),
        DeValue::Array(_) => Err(format!("`{key}`: a list inside a list")),
        DeValue::Table(_) => Err(format!(
            "`{key}` is a table, but keys are flag names, at the top of the file"
        )),
    }
}

/// What a TOML value is, for a message (never the value itself: it may be a secret).
fn kind_of(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "a number",
        DeValue::Float(_) => "a number",
        DeValue::Boolean(_) => "true or false",
        DeValue::Datetime(_) => "a date",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table",
    }
}

/// The values as clap will split them (`signature-file = "a.json,b.json"` is two files, as on
/// the command line).
fn split_like_clap(arg: &Arg, values: &[String]) -> Vec<String> {
    match arg.get_value_delimiter() {
        Some(delimiter) => values
            .iter()
            .flat_map(|value| value.split(delimiter).map(str::to_owned))
            .collect(),
        None => values.to_vec(),
    }
}

/// Runs the flag's own value parser on `value`, so a bad value is reported with its line now
/// rather than by clap later, without a line and with the value in clear. (clap keeps a
/// parser's `parse` to itself: a one-flag command runs it.)
fn parse_like_clap(entry: &Entry<'_, '_>, arg: &Arg, value: &str) -> Result<(), String> {
    let probe = Command::new("config-file")
        .no_binary_name(true)
        .disable_help_flag(true)
        .arg(
            Arg::new("value")
                .long("value")
                .action(ArgAction::Set)
                .value_parser(arg.get_value_parser().clone()),
        );
    // `--value=…` takes any text as the value, a leading `-` included.
    let Err(error) = probe.try_get_matches_from([format!("--value={value}")]) else {
        return Ok(());
    };
    let key = entry.key;
    if entry.secret {
        return Err(format!(
            "`{key}`: invalid value (not shown: it is a secret)"
        ));
    }
    let quoted = format!("{value:?}");
    Err(
        match (
            error.source(),
            error.get(clap::error::ContextKind::ValidValue),
        ) {
            // Our parsers name the value themselves (`"soon" is not a duration …`).
            (Some(source), _) if source.to_string().contains(&quoted) => {
                format!("`{key}`: {source}")
            }
            (Some(source), _) => format!("`{key}`: invalid value {quoted}: {source}"),
            (None, Some(valid)) => format!("`{key}`: invalid value {quoted} (one of: {valid})"),
            (None, None) => format!("`{key}`: invalid value {quoted}"),
        },
    )
}

/// Every string in `value` (a list's items included), to look for URLs with a password.
fn strings_in<'v>(value: &'v DeValue<'_>) -> Box<dyn Iterator<Item = &'v str> + 'v> {
    match value {
        DeValue::String(text) => Box::new(std::iter::once(text.as_ref())),
        DeValue::Array(items) => Box::new(items.iter().flat_map(|item| strings_in(item.get_ref()))),
        DeValue::Table(table) => Box::new(
            table
                .iter()
                .flat_map(|(_, item)| strings_in(item.get_ref())),
        ),
        _ => Box::new(std::iter::empty()),
    }
}

/// `command` with each entry's value as the default of every flag of that name, in every
/// subcommand. The defaults are hidden from `--help` (they may be secrets), a required flag
/// that the file gives is no longer required, and everything else is clap's: a flag or an
/// environment variable still wins.
fn with_defaults(command: Command, entries: &[Entry<'_, '_>]) -> Command {
    command
        .mut_args(|arg| {
            let Some(entry) = entries
                .iter()
                .find(|entry| arg.get_long() == Some(entry.key))
            else {
                return arg;
            };
            match suited(entry, &arg) {
                Ok(FileDefault::Switch(on)) => arg.default_value(if on { "true" } else { "false" }),
                Ok(FileDefault::Values(values)) => arg
                    .default_values(values)
                    .required(false)
                    .hide_default_value(true),
                // A flag of the same name elsewhere took it (a list for `--signature-file`
                // of `listen` is not one for a flag that takes one file): this one keeps its
                // own default.
                Err(_) => arg,
            }
        })
        .mut_subcommands(|subcommand| with_defaults(subcommand, entries))
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&byte| byte == b'\n')
        .count()
        + 1
}

/// The flag name nearest to `key` (at most two edits away), for "did you mean".
fn closest<'n>(key: &str, names: impl Iterator<Item = &'n str>) -> Option<&'n str> {
    names
        .map(|name| (edit_distance(key, name), name))
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, name)| name)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, a_char) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, b_char) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a_char != *b_char);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A program shaped like ours: global flags, a switch, a subcommand with lists, sizes,
    /// choices and a token, and a second subcommand sharing a flag name with one value only.
    fn demo() -> Command {
        let token = |text: &str| -> Result<String, String> {
            if text.len() >= 16 {
                Ok(text.to_owned())
            } else {
                Err("a token has at least 16 characters".to_owned())
            }
        };
        add_flag(Command::new("demo"), "DEMO_CONFIG")
            .arg(
                Arg::new("store")
                    .long("store")
                    .global(true)
                    .default_value("sqlite:./demo.db"),
            )
            .arg(
                Arg::new("json")
                    .long("json")
                    .global(true)
                    .action(ArgAction::SetTrue),
            )
            .subcommand(
                Command::new("listen")
                    .arg(
                        Arg::new("listen")
                            .long("listen")
                            .default_value("127.0.0.1:8080"),
                    )
                    .arg(
                        Arg::new("signature_file")
                            .long("signature-file")
                            .action(ArgAction::Append)
                            .value_delimiter(','),
                    )
                    .arg(
                        Arg::new("max_body")
                            .long("max-body")
                            .default_value("1MiB")
                            .value_parser(crate::parse::byte_size),
                    )
                    .arg(
                        Arg::new("output")
                            .long("output")
                            .value_parser(["pretty", "json", "quiet"]),
                    )
                    .arg(Arg::new("ui_token").long("ui-token").value_parser(token)),
            )
            .subcommand(
                Command::new("sign").arg(
                    Arg::new("signature_file")
                        .long("signature-file")
                        .required(true),
                ),
            )
    }

    fn configured(text: &str) -> anyhow::Result<(Command, Loaded)> {
        apply(demo(), Path::new("demo.toml"), text, &["ui-token"])
    }

    fn error_of(text: &str) -> String {
        match configured(text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(error) => format!("{error:#}"),
        }
    }

    fn matches(text: &str, args: &[&str]) -> clap::ArgMatches {
        let (command, _) = configured(text).unwrap();
        command
            .try_get_matches_from(std::iter::once("demo").chain(args.iter().copied()))
            .unwrap()
    }

    fn listen_matches(text: &str, args: &[&str]) -> clap::ArgMatches {
        let mut all = vec!["listen"];
        all.extend_from_slice(args);
        matches(text, &all)
            .subcommand_matches("listen")
            .unwrap()
            .clone()
    }

    fn one(matches: &clap::ArgMatches, id: &str) -> String {
        matches.get_one::<String>(id).unwrap().clone()
    }

    #[test]
    fn the_file_is_named_by_the_flag_then_the_environment() {
        let named = |args: &[&str], env: Option<&str>| {
            named_file(args.iter().map(OsString::from), env.map(OsString::from))
        };
        let path = |text: &str| Some(PathBuf::from(text));
        assert_eq!(
            named(&["listen", "--config", "a.toml"], None),
            path("a.toml")
        );
        assert_eq!(
            named(&["--config=b.toml", "listen"], Some("e.toml")),
            path("b.toml")
        );
        assert_eq!(named(&["listen"], Some("e.toml")), path("e.toml"));
        assert_eq!(named(&["listen"], Some("")), None);
        assert_eq!(named(&["listen"], None), None);
        // A value after `--` is an operand; a missing value is clap's to report.
        assert_eq!(named(&["check", "--", "--config", "x"], None), None);
        assert_eq!(named(&["--config", "--listen", "x"], None), None);
        assert_eq!(named(&["--config"], None), None);
    }

    #[test]
    fn a_flag_beats_the_file_which_beats_the_default() {
        let file = "listen = \"0.0.0.0:9000\"\nmax-body = \"2KiB\"\n";
        let from_file = listen_matches(file, &[]);
        assert_eq!(one(&from_file, "listen"), "0.0.0.0:9000");
        assert_eq!(from_file.get_one::<u64>("max_body"), Some(&2048));
        let flag = listen_matches(file, &["--listen", "127.0.0.1:1"]);
        assert_eq!(one(&flag, "listen"), "127.0.0.1:1");
        let default = listen_matches("", &[]);
        assert_eq!(one(&default, "listen"), "127.0.0.1:8080");
        assert_eq!(default.get_one::<u64>("max_body"), Some(&(1024 * 1024)));
    }

    #[test]
    fn lists_numbers_switches_and_global_flags_take_their_values() {
        let file = "signature-file = [\"a.json\", \"b.json\"]\nmax-body = 4096\n\
                    json = true\nstore = \"sqlite:/var/lib/demo.db\"\n";
        let listen = listen_matches(file, &[]);
        let files: Vec<&String> = listen.get_many("signature_file").unwrap().collect();
        assert_eq!(files, ["a.json", "b.json"]);
        assert_eq!(listen.get_one::<u64>("max_body"), Some(&4096));
        assert!(listen.get_flag("json"));
        assert_eq!(one(&listen, "store"), "sqlite:/var/lib/demo.db");
        // A flag given replaces the file's whole list; a string splits as on the command line.
        let flag = listen_matches(file, &["--signature-file", "c.json"]);
        let files: Vec<&String> = flag.get_many("signature_file").unwrap().collect();
        assert_eq!(files, ["c.json"]);
        let split = listen_matches("signature-file = \"a.json,b.json\"\n", &[]);
        assert_eq!(
            split.get_many::<String>("signature_file").unwrap().count(),
            2
        );
        // A switch the file turns off stays off; the flag still turns it on.
        assert!(!listen_matches("json = false\n", &[]).get_flag("json"));
        assert!(listen_matches("json = false\n", &["--json"]).get_flag("json"));
    }

    #[test]
    fn a_value_goes_to_the_flags_of_its_name_that_it_suits() {
        // One file: the required flag of `sign` is given by it.
        let sign = matches("signature-file = \"s.json\"\n", &["sign"]);
        assert_eq!(
            one(sign.subcommand_matches("sign").unwrap(), "signature_file"),
            "s.json"
        );
        // A list suits `listen`'s flag only: `sign` still asks for its one file.
        let (command, _) = configured("signature-file = [\"a\", \"b\"]\n").unwrap();
        let error = command.try_get_matches_from(["demo", "sign"]).unwrap_err();
        assert_eq!(
            error.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let error = error_of("listen = \"0.0.0.0:1\"\n\nlisen = \"x\"\n");
        assert_eq!(
            error,
            "config file demo.toml, line 3: unknown key `lisen`: no flag --lisen \
             (did you mean `listen`?)"
        );
        let error = error_of("# a comment\nconfig = \"other.toml\"\n");
        assert!(error.contains("line 2: `config` cannot be set"), "{error}");
        let error = error_of("help = true\n");
        assert!(
            error.contains("`help` cannot be set in a config file"),
            "{error}"
        );
    }

    #[test]
    fn a_value_of_the_wrong_shape_is_named_with_its_line() {
        for (text, expected) in [
            (
                "listen = [\"a\", \"b\"]\n",
                "line 1: `listen` takes one value, not a list",
            ),
            (
                "\nlisten = true\n",
                "line 2: `listen` takes a value, not true or false",
            ),
            (
                "json = \"yes\"\n",
                "line 1: `json` is a switch: write true or false, not a string",
            ),
            ("[listen]\nport = 1\n", "line 1: `listen` is a table"),
            (
                "signature-file = [\n  \"a\",\n  [\"b\"],\n]\n",
                "line 3: `signature-file`: a list inside a list",
            ),
            (
                "max-body = \"lots\"\n",
                "line 1: `max-body`: \"lots\" is not a size such as 1MiB",
            ),
            (
                "output = \"loud\"\n",
                "line 1: `output`: invalid value \"loud\" (one of: pretty, json, quiet)",
            ),
        ] {
            let error = error_of(text);
            assert!(error.contains(expected), "{text:?}: {error}");
        }
    }

    #[test]
    fn every_problem_is_said_once_in_file_order() {
        let error = error_of("zzz = 1\nlisten = [1]\naaa = 2\n");
        let lines: Vec<&str> = error.lines().collect();
        assert_eq!(lines.len(), 3, "{error}");
        assert!(lines[0].contains("line 1: unknown key `zzz`"), "{error}");
        assert!(lines[1].contains("line 2: `listen`"), "{error}");
        assert!(lines[2].contains("line 3: unknown key `aaa`"), "{error}");
    }

    #[test]
    fn secrets_stay_out_of_errors_and_help() {
        // A refused secret is not echoed, nor is the line of a syntax error.
        let error = error_of("ui-token = \"short-secret\"\n");
        assert!(
            error.contains("line 1: `ui-token`: invalid value (not shown"),
            "{error}"
        );
        assert!(!error.contains("short-secret"), "{error}");
        let error = error_of("listen = \"x\"\nui-token = \"unterminated-secret\n");
        assert!(
            error.starts_with("config file demo.toml, line 2: "),
            "{error}"
        );
        assert!(!error.contains("unterminated-secret"), "{error}");
        let error = error_of("store = \"postgres://u:pw-in-url@db/x\"\nstore = \"again\"\n");
        assert!(!error.contains("pw-in-url"), "{error}");

        let text = "ui-token = \"a-secret-of-enough-length\"\nlisten = \"0.0.0.0:7777\"\n\
                    store = \"postgres://u:pw-in-url@db/x\"\n";
        let (mut command, loaded) = configured(text).unwrap();
        assert_eq!(loaded.secret_keys(), ["ui-token", "store"]);
        command.build();
        let listen = command.find_subcommand_mut("listen").unwrap();
        let help = listen.render_long_help().to_string();
        for value in ["a-secret-of-enough-length", "0.0.0.0:7777", "pw-in-url"] {
            assert!(!help.contains(value), "{value} in:\n{help}");
        }
        // Values from elsewhere keep their default shown.
        assert!(help.contains("[default: 1MiB]"), "{help}");
        let (_, plain) = configured("listen = \"0.0.0.0:1\"\n").unwrap();
        assert!(plain.secret_keys().is_empty());
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("lisen", "listen"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("store", "store"), 0);
        assert_eq!(
            closest("sotre", ["store", "state"].into_iter()),
            Some("store")
        );
        assert_eq!(closest("nothing-like", ["store"].into_iter()), None);
    }
}
