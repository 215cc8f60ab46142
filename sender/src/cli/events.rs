//! `sender events`: the event catalogue.

use std::process::ExitCode;

use common::outln;
use serde_json::{json, Value};

use super::output::print_json;

/// `sender events`: the catalogue of the `verify` library, as a table or (`--json`) an array
/// of `{"eventName", "kind", "fields"}`.
pub(super) fn print_catalogue(json: bool) -> anyhow::Result<ExitCode> {
    let kind_name = |kind: &verify::EventKind| match kind.class {
        verify::EventClass::RealTime => "real-time",
        verify::EventClass::Batch => "batch",
    };
    let fields = |kind: &verify::EventKind| -> Vec<&'static str> {
        kind.fields.iter().map(|field| field.json_name()).collect()
    };
    if json {
        let entries: Vec<Value> = verify::CATALOG
            .iter()
            .map(|kind| json!({"eventName": kind.name, "kind": kind_name(kind), "fields": fields(kind)}))
            .collect();
        print_json(&Value::Array(entries))?;
    } else {
        let width = verify::CATALOG.iter().map(|kind| kind.name.len()).max();
        let width = width.unwrap_or_default() + 2;
        outln!("{:<width$}{:<11}DATA FIELDS", "EVENT", "KIND")?;
        for kind in verify::CATALOG {
            outln!(
                "{:<width$}{:<11}{}",
                kind.name,
                kind_name(kind),
                fields(kind).join(", ")
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
