//! The aligned tables listing commands print by default (`--json` prints
//! one JSON object per line instead): a header of the upper-cased column
//! names, then one row per item, each column padded to its widest cell,
//! every line ending in a newline.

use serde_json::Value;

/// `items` as a table of `columns`: strings as they are, lists joined by
/// commas, numbers and booleans as JSON writes them, absent or null as `-`.
pub fn table(items: &[Value], columns: &[&str]) -> String {
    let cell = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            let parts: Vec<String> = a
                .iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                .collect();
            if parts.is_empty() {
                "-".into()
            } else {
                parts.join(",")
            }
        }
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| columns.iter().map(|c| cell(&item[*c])).collect())
        .collect();
    let header: Vec<String> = columns.iter().map(|c| c.to_uppercase()).collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            std::iter::once(&header)
                .chain(&rows)
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    std::iter::once(&header)
        .chain(&rows)
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            format!("{}\n", cells.join("  ").trim_end())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cells_are_aligned_and_lists_joined() {
        let items = [
            json!({"id": "a", "scopes": ["read", "write"], "n": 3}),
            json!({"id": "longer", "scopes": [], "n": null}),
        ];
        assert_eq!(
            table(&items, &["id", "scopes", "n"]),
            "ID      SCOPES      N\na       read,write  3\nlonger  -           -\n"
        );
    }
}
