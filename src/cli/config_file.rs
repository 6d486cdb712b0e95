//! `--config FILE` (`TOKENWARDEN_CONFIG`): a TOML file of global and `serve` settings under their
//! flags' names (`workers = 4`, `trusted-proxy = ["10.0.0.1"]`; `_` may stand for `-`), the layer
//! between the defaults and the environment: defaults < file < environment < flags.
//!
//! clap already knows every flag, its type and range, and whether a value came from the
//! environment or the command line. So the file is turned into the arguments clap would have been
//! given for the settings nobody set otherwise, and parsed again: every rule that holds for a flag
//! (types, ranges, the refused `--trust-forwarded-for`) holds for the file too, and an error names
//! the flag, which is the key.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::Path;

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

/// The subcommand whose settings a file may hold besides the global ones.
pub(super) const SERVE: &str = "serve";
/// The flag that names the file; not a setting the file itself may hold.
pub(super) const CONFIG: &str = "config";

/// The settings a file may hold, by flag name: the global arguments and `serve`'s, each with
/// whether it belongs to `serve`.
fn known_settings(command: &Command) -> BTreeMap<String, (Arg, bool)> {
    let global = command
        .get_arguments()
        .filter(|arg| arg.is_global_set())
        .map(|arg| (arg.clone(), false));
    let serve = command
        .find_subcommand(SERVE)
        .into_iter()
        .flat_map(Command::get_arguments)
        .map(|arg| (arg.clone(), true));
    global
        .chain(serve)
        .filter_map(|(arg, serve_only)| {
            let name = arg.get_long()?.to_string();
            (name != CONFIG && name != "help" && name != "version")
                .then_some((name, (arg, serve_only)))
        })
        .collect()
}

/// Reads and checks the file at `path`: a table whose keys all name settings, once each, with
/// values of their flags' shape (whatever the command: a `serve` key is checked by `site list`
/// too). Every error names the file and, where there is one, the key.
pub(super) fn read(command: &Command, path: &Path) -> Result<toml::Table, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read the config file {}: {error}", path.display()))?;
    let table: toml::Table = text.parse().map_err(|error| {
        format!(
            "the config file {} is not valid TOML: {error}",
            path.display()
        )
    })?;
    let known = known_settings(command);
    let mut seen = BTreeSet::new();
    for (key, value) in &table {
        let name = key.replace('_', "-");
        let Some((arg, _)) = known.get(&name) else {
            return Err(format!(
                "unknown key {key:?} in the config file {}: keys are the global and serve flags' \
                 names, e.g. database or throttle-window-secs",
                path.display()
            ));
        };
        if !seen.insert(name) {
            return Err(format!(
                "the key {key:?} appears twice in the config file {} (once with _ and once with -)",
                path.display()
            ));
        }
        check_shape(value, arg).map_err(|shape| {
            format!(
                "the key {key:?} in the config file {} {shape}",
                path.display()
            )
        })?;
    }
    Ok(table)
}

/// What a value must look like for its flag: `true` or `false` for a switch; a string, number or
/// boolean for a flag that takes one value; a non-empty array of them for a repeatable flag.
fn check_shape(value: &toml::Value, arg: &Arg) -> Result<(), &'static str> {
    let scalar = |value: &toml::Value| {
        matches!(
            value,
            toml::Value::String(_)
                | toml::Value::Integer(_)
                | toml::Value::Float(_)
                | toml::Value::Boolean(_)
        )
    };
    if !arg.get_action().takes_values() {
        return match value {
            toml::Value::Boolean(_) => Ok(()),
            _ => Err("is a switch: true or false"),
        };
    }
    let repeatable = matches!(arg.get_action(), ArgAction::Append);
    match value {
        toml::Value::Array(items)
            if repeatable && !items.is_empty() && items.iter().all(scalar) =>
        {
            Ok(())
        }
        toml::Value::Array(_) if repeatable => {
            Err("must be a non-empty array of strings, numbers or booleans")
        }
        value if scalar(value) => Ok(()),
        _ => Err("must be a string, a number or a boolean"),
    }
}

/// The file's settings as command-line arguments, for those neither the command line nor the
/// environment set, and the names of the settings they set. `serve`'s settings apply only when
/// the command is `serve`.
pub(super) fn arguments(
    command: &Command,
    matches: &ArgMatches,
    table: &toml::Table,
) -> (Vec<OsString>, BTreeSet<String>) {
    let known = known_settings(command);
    let serving = matches.subcommand_name() == Some(SERVE);
    let sub_matches = matches.subcommand().map(|(_, sub)| sub);
    let mut arguments = Vec::new();
    let mut from_file = BTreeSet::new();
    for (key, value) in table {
        let name = key.replace('_', "-");
        let Some((arg, serve_only)) = known.get(&name) else {
            continue;
        };
        if *serve_only && !serving {
            continue;
        }
        let id = arg.get_id().as_str();
        let set_elsewhere = [Some(matches), sub_matches]
            .into_iter()
            .flatten()
            .filter_map(|matches| {
                // Only matches that know the argument may be asked where its value came from.
                matches.try_get_raw(id).ok().flatten()?;
                matches.value_source(id)
            })
            .any(|source| matches!(source, ValueSource::CommandLine | ValueSource::EnvVariable));
        if set_elsewhere {
            continue;
        }
        from_file.insert(name);
        let flag = format!("--{}", arg.get_long().unwrap_or(id));
        let values: Vec<&toml::Value> = match value {
            toml::Value::Array(items) => items.iter().collect(),
            single => vec![single],
        };
        for value in values {
            let text = match value {
                toml::Value::Boolean(set) if !arg.get_action().takes_values() => {
                    if *set {
                        arguments.push(OsString::from(&flag));
                    }
                    continue;
                }
                toml::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            // One `--flag=value` argument, so a value that starts with `-` stays a value.
            arguments.push(OsString::from(format!("{flag}={text}")));
        }
    }
    (arguments, from_file)
}

/// Every setting a file may hold, with its effective value and where it came from, for
/// `tokenwarden config show`: `matches` must come from a `serve` command line, `from_file` names
/// the settings the file gave.
pub(super) fn effective(
    command: &Command,
    matches: &ArgMatches,
    from_file: &BTreeSet<String>,
) -> Vec<Setting> {
    let serve = matches.subcommand_matches(SERVE);
    known_settings(command)
        .into_iter()
        .filter(|(_, (arg, _))| !arg.is_hide_set())
        .map(|(name, (arg, serve_only))| {
            let id = arg.get_id().as_str();
            let from = if serve_only { serve } else { Some(matches) };
            let values: Vec<String> = from
                .and_then(|matches| matches.get_raw(id))
                .map(|raw| {
                    raw.map(|value| value.to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            let source = match from.and_then(|matches| matches.value_source(id)) {
                _ if from_file.contains(&name) => "file",
                Some(ValueSource::DefaultValue) => "default",
                Some(ValueSource::EnvVariable) => "environment",
                Some(ValueSource::CommandLine) => "flag",
                _ => "unset",
            };
            Setting {
                name,
                values,
                source,
                switch: !arg.get_action().takes_values(),
            }
        })
        .collect()
}

/// One setting as `config show` prints it.
#[derive(Debug)]
pub(super) struct Setting {
    pub name: String,
    pub values: Vec<String>,
    pub source: &'static str,
    /// A flag without a value (`--demo`): `true` or `false` in a file.
    pub switch: bool,
}
