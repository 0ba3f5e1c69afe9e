//! The configs' JSON (config.json, scheduler_config.json, model_index.json): parsed strictly, and
//! an error names the field it is in. Shared by `model` and `sampler`, so neither imports the other.

use serde_json::Value;

/// Parses a JSON config file (text after the JSON value is refused; an HTML page is named as such).
pub fn parse_json(text: &str) -> std::result::Result<Value, String> {
    if text.trim_start().starts_with('<') {
        return Err("the file is HTML or XML, not JSON: the URL points at a web page (an error or login page?), not a model folder".into());
    }
    serde_json::from_str(text).map_err(|e| e.to_string())
}

/// `T` from a JSON value; an error names the field it is in.
pub fn from_value<T: serde::de::DeserializeOwned>(value: Value) -> std::result::Result<T, String> {
    serde_json::from_value::<T>(value.clone()).map_err(|e| match culprit::<T>(&value) {
        Some(field) => format!("`{field}`: {e}"),
        None => e.to_string(),
    })
}

/// The first field of a JSON object that `T` refuses on its own (every field of our configs has a
/// default, so an object of one field parses unless that field is bad).
fn culprit<T: serde::de::DeserializeOwned>(value: &Value) -> Option<String> {
    let object = value.as_object()?;
    object.iter().find_map(|(k, v)| {
        let alone = Value::Object([(k.clone(), v.clone())].into_iter().collect());
        serde_json::from_value::<T>(alone).is_err().then(|| k.clone())
    })
}
