//! Keys as a person gives them (`--pk-from 42`, `--pk-from '["eu", 7]'`).

use concord_change::Value;

/// A key as given: a value, or a JSON array of values for a composite key; numbers become
/// numbers for integer columns, everything else text. `types` are the key columns' data
/// types, in key order.
pub fn parse_key(text: &str, types: &[String]) -> Result<Vec<Value>, String> {
    let parts: Vec<serde_json::Value> = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Array(items)) => items,
        _ => vec![serde_json::Value::String(text.to_owned())],
    };
    parse_parts(&parts, types)
}

/// As [`parse_key`], from the key's values already split.
pub fn parse_parts(parts: &[serde_json::Value], types: &[String]) -> Result<Vec<Value>, String> {
    if parts.len() != types.len() {
        return Err(format!(
            "the primary key has {} column(s); give {} value(s)",
            types.len(),
            types.len()
        ));
    }
    parts
        .iter()
        .zip(types)
        .map(|(v, ty)| {
            let s = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let integer = matches!(
                ty.as_str(),
                "tinyint" | "smallint" | "mediumint" | "int" | "bigint"
            );
            if integer {
                s.parse::<i64>()
                    .map(Value::Int)
                    .or_else(|_| s.parse::<u64>().map(Value::UInt))
                    .map_err(|_| format!("`{s}` is not a whole number ({ty} column)"))
            } else {
                Ok(Value::Text(s))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_by_their_columns_types() {
        let one = ["int".to_owned()];
        assert_eq!(parse_key("42", &one), Ok(vec![Value::Int(42)]));
        assert!(parse_key("x", &one).unwrap_err().contains("whole number"));
        let two = ["varchar".to_owned(), "bigint".to_owned()];
        assert_eq!(
            parse_key(r#"["eu", 18446744073709551615]"#, &two),
            Ok(vec![Value::Text("eu".into()), Value::UInt(u64::MAX)])
        );
        assert!(parse_key("eu", &two).unwrap_err().contains("2 column(s)"));
    }
}
