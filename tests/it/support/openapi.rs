//! Conformance of HTTP answers to an OpenAPI 3.0 document: the operation is found by method
//! and path template, the status must be one it declares, the content type the declared one,
//! and a JSON body must match the declared schema. The schema check covers what the admin
//! API's document uses: `$ref`, `type` with `nullable`, `enum`, `required`, `properties`,
//! `additionalProperties`, `items`, `allOf`, `minimum`, `maximum`.

use serde_json::Value;

use super::receiver::Reply;

const METHODS: &[&str] = &["get", "put", "post", "patch", "delete", "head", "options"];

/// Every (method, path template) the document declares.
pub fn operations(document: &Value) -> Vec<(String, String)> {
    let mut all = Vec::new();
    if let Some(paths) = document["paths"].as_object() {
        for (path, item) in paths {
            for method in METHODS {
                if item.get(*method).is_some() {
                    all.push(((*method).to_owned(), path.clone()));
                }
            }
        }
    }
    all
}

/// The template of `document` that `path` (query ignored) matches: `{name}` takes one segment.
fn template_of<'a>(document: &'a Value, path: &str) -> Option<&'a str> {
    let path = path.split('?').next().unwrap_or(path);
    let wanted: Vec<&str> = path.split('/').collect();
    document["paths"].as_object()?.keys().find_map(|template| {
        let parts: Vec<&str> = template.split('/').collect();
        let matches = parts.len() == wanted.len()
            && parts
                .iter()
                .zip(&wanted)
                .all(|(part, given)| part.starts_with('{') || part == given);
        matches.then_some(template.as_str())
    })
}

/// Checks `reply` to `method path` against the document, and, when the request was accepted
/// (2xx), its JSON `sent` against the declared request body; gives the path template.
///
/// # Errors
/// What does not conform, in words.
pub fn check(
    document: &Value,
    method: &str,
    path: &str,
    sent: Option<&Value>,
    reply: &Reply,
) -> Result<String, String> {
    let template = template_of(document, path)
        .ok_or_else(|| format!("no path of the document matches {path}"))?;
    let operation = &document["paths"][template][method.to_ascii_lowercase()];
    if operation.is_null() {
        return Err(format!("{template} declares no {method}"));
    }
    if let (Some(sent), true) = (sent, reply.status.is_success()) {
        let schema = operation["requestBody"]["content"]["application/json"]["schema"].clone();
        if schema.is_null() {
            return Err(format!("{method} {template} declares no JSON request body"));
        }
        validate(document, &schema, sent, "request")?;
    }
    let status = reply.status.as_u16().to_string();
    let declared = operation["responses"]
        .get(&status)
        .or_else(|| operation["responses"].get("default"))
        .ok_or_else(|| format!("status {status} is not declared for {method} {template}"))?;
    let declared = resolve(document, declared);
    let content_type = reply
        .headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let media = content_type.split(';').next().unwrap_or_default().trim();
    let Some(content) = declared["content"].as_object() else {
        return if reply.body.is_empty() {
            Ok(template.to_owned())
        } else {
            Err(format!("{status} declares no body, got {content_type}"))
        };
    };
    let schema = content
        .get(media)
        .ok_or_else(|| format!("{status}: content type {media:?} is not declared"))?["schema"]
        .clone();
    if media == "application/json" {
        let body: Value = serde_json::from_slice(&reply.body)
            .map_err(|error| format!("{status}: the body is not JSON: {error}"))?;
        validate(document, &schema, &body, "$")?;
    }
    Ok(template.to_owned())
}

/// Follows a `$ref` (local, `#/…`).
fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.trim_start_matches('#');
            resolve(document, document.pointer(pointer).unwrap_or(&Value::Null))
        }
        None => schema,
    }
}

/// Checks `value` against `schema`; `at` names where, for the message.
pub fn validate(document: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(document, schema);
    if schema.is_null() {
        return Err(format!("{at}: the schema reference does not resolve"));
    }
    if value.is_null() && schema["nullable"] == Value::Bool(true) {
        return Ok(());
    }
    if let Some(parts) = schema["allOf"].as_array() {
        for part in parts {
            validate(document, part, value, at)?;
        }
    }
    if let Some(kind) = schema["type"].as_str() {
        let fits = match kind {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            _ => false,
        };
        if !fits {
            return Err(format!("{at}: {value} is not of type {kind}"));
        }
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(value) {
            return Err(format!("{at}: {value} is not one of {allowed:?}"));
        }
    }
    if let (Some(minimum), Some(number)) = (schema["minimum"].as_f64(), value.as_f64()) {
        if number < minimum {
            return Err(format!("{at}: {number} is below {minimum}"));
        }
    }
    if let (Some(maximum), Some(number)) = (schema["maximum"].as_f64(), value.as_f64()) {
        if number > maximum {
            return Err(format!("{at}: {number} is above {maximum}"));
        }
    }
    if let Some(object) = value.as_object() {
        let properties = schema["properties"].as_object();
        for name in schema["required"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap_or_default();
            if !object.contains_key(name) {
                return Err(format!("{at}: the required {name:?} is missing"));
            }
        }
        for (name, field) in object {
            match properties.and_then(|properties| properties.get(name)) {
                Some(property) => validate(document, property, field, &format!("{at}.{name}"))?,
                None if schema["additionalProperties"] == Value::Bool(false) => {
                    return Err(format!("{at}: {name:?} is not declared"))
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (index, item) in array.iter().enumerate() {
            validate(document, items, item, &format!("{at}[{index}]"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every `$ref` of `value`, anywhere in it.
    fn references(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(reference)) = map.get("$ref") {
                    found.push(reference.clone());
                }
                map.values().for_each(|inner| references(inner, found));
            }
            Value::Array(items) => items.iter().for_each(|inner| references(inner, found)),
            _ => {}
        }
    }

    #[test]
    fn the_admin_document_is_openapi_3_with_every_reference_resolved() {
        let document: Value =
            serde_json::from_str(include_str!("../../../sender/src/admin/openapi.json"))
                .expect("JSON");
        assert!(document["openapi"]
            .as_str()
            .is_some_and(|version| version.starts_with("3.")));
        assert!(document["info"]["title"].is_string() && document["info"]["version"].is_string());
        let mut found = Vec::new();
        references(&document, &mut found);
        assert!(!found.is_empty());
        for reference in found {
            let pointer = reference.strip_prefix('#').expect("a local reference");
            assert!(
                document.pointer(pointer).is_some(),
                "{reference} does not resolve"
            );
        }
        for (method, path) in operations(&document) {
            let operation = &document["paths"][&path][&method];
            assert!(operation["operationId"].is_string(), "{method} {path}");
            assert!(
                operation["responses"]["401"].is_object(),
                "{method} {path}: 401"
            );
            if method != "get" {
                assert!(
                    operation["responses"]["403"].is_object(),
                    "{method} {path}: 403"
                );
            }
        }
    }

    #[test]
    fn the_checker_refuses_what_does_not_match() {
        let document = json!({"components": {"schemas": {"E": {
            "type": "object", "required": ["error"], "additionalProperties": false,
            "properties": {"error": {"type": "string", "enum": ["a"]},
                           "n": {"type": "integer", "nullable": true, "minimum": 1, "maximum": 3}}}}}});
        let schema = json!({"$ref": "#/components/schemas/E"});
        let check = |value: Value| validate(&document, &schema, &value, "$");
        assert!(check(json!({"error": "a", "n": null})).is_ok());
        assert!(check(json!({"error": "a", "n": 2})).is_ok());
        assert!(check(json!({"error": "b"})).is_err());
        assert!(check(json!({"n": 2})).is_err());
        assert!(check(json!({"error": "a", "extra": 1})).is_err());
        assert!(check(json!({"error": "a", "n": 0})).is_err());
        assert!(check(json!({"error": "a", "n": 4})).is_err());
        assert!(check(json!({"error": "a", "n": "2"})).is_err());
        assert!(check(json!([])).is_err());
    }
}
