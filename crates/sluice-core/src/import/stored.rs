//! How a CSV type's records are stored: a JSON array of strings in the type's column order,
//! known by a content hash of that text. Since a value is known by its position, a type whose
//! columns change (one inserted or moved, renamed with the old name as an alias, removed) has
//! its stored arrays rewritten in the new order ([`Relayout`]) before anything reads them:
//! read in the old order, every value after an inserted column would be shown, exported and
//! compared under its neighbour's name.

use super::ImportType;
use sha2::{Digest, Sha256};

/// Values as a JSON array of strings, in the type's column order. Runs of characters that
/// need no escaping are copied whole (this is on the per-row hot path of every import).
pub fn encode_values<'a>(values: impl Iterator<Item = &'a str>, out: &mut String) {
    out.push('[');
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.push(',');
        }
        crate::json::push_string(out, v);
    }
    out.push(']');
}

/// The content hash a record is compared by: an unchanged row is not rewritten.
pub fn content_hash(data: &str) -> i64 {
    let digest = Sha256::digest(data.as_bytes());
    i64::from_le_bytes([
        digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
    ])
}

/// A type's columns as its records are stored: their names, in order.
pub fn layout_of(t: &ImportType) -> Vec<String> {
    t.columns.iter().map(|c| c.name.clone()).collect()
}

/// What a store does with a type's records, given the layout it remembers for the type
/// (`None`: none yet) and the type's current columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutChange {
    /// The records are in the type's order.
    Unchanged,
    /// Remember `layout` (a type seen for the first time: its records are taken to be in its
    /// order; or a layout that differs in nothing an array holds).
    Remember { layout: String },
    /// Rewrite every record of the type by `relayout`, then remember `layout`.
    Relay { relayout: Relayout, layout: String },
}

/// The store's decision for type `t` (see [`LayoutChange`]); `Err` names what is wrong with
/// the remembered layout.
pub fn layout_change(stored: Option<&str>, t: &ImportType) -> Result<LayoutChange, String> {
    let layout = serde_json::to_string(&layout_of(t)).map_err(|e| e.to_string())?;
    let Some(stored) = stored else { return Ok(LayoutChange::Remember { layout }) };
    if stored == layout {
        return Ok(LayoutChange::Unchanged);
    }
    let old: Vec<String> = serde_json::from_str(stored)
        .map_err(|e| format!("the stored column order of type {}: {e}", t.name))?;
    Ok(match Relayout::between(&old, t) {
        Some(relayout) => LayoutChange::Relay { relayout, layout },
        None => LayoutChange::Remember { layout },
    })
}

/// How the arrays stored in one layout of a type become arrays of its current columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relayout {
    /// For each current column, its position in the stored arrays (`None`: a new column).
    from: Vec<Option<usize>>,
    /// Current columns found under another stored name (an alias): (stored, current).
    pub renamed: Vec<(String, String)>,
    /// Current columns the stored arrays do not have: empty in every record.
    pub added: Vec<String>,
    /// Stored columns the type no longer has, with their positions: their values go.
    pub dropped: Vec<(usize, String)>,
}

impl Relayout {
    /// `None` when the arrays stored in `stored`'s order are the type's own. A current column
    /// takes the stored one of its name, else one named like it in another case, else one of
    /// its aliases (a column renamed with its old name kept as an alias keeps its values).
    pub fn between(stored: &[String], t: &ImportType) -> Option<Self> {
        if stored.iter().map(String::as_str).eq(t.columns.iter().map(|c| c.name.as_str())) {
            return None;
        }
        let mut used = vec![false; stored.len()];
        let mut take = |matches: &dyn Fn(&str) -> bool| {
            let i = (0..stored.len()).find(|&i| !used[i] && matches(&stored[i]))?;
            used[i] = true;
            Some(i)
        };
        // Exact names first, for every column, so that an alias never takes another column's own.
        let mut from: Vec<Option<usize>> = t.columns.iter().map(|c| take(&|s| s == c.name)).collect();
        // Then the same name in another case, for every column; then an alias.
        let same = |a: &str, b: &str| a.to_lowercase() == b.to_lowercase();
        let mut renamed = Vec::new();
        for alias in [false, true] {
            for (c, f) in t.columns.iter().zip(from.iter_mut()) {
                if f.is_none() {
                    *f = if alias {
                        take(&|s| c.aliases.iter().any(|a| same(a, s)))
                    } else {
                        take(&|s| same(s, &c.name))
                    };
                    if let Some(i) = *f {
                        renamed.push((stored[i].clone(), c.name.clone()));
                    }
                }
            }
        }
        let added =
            t.columns.iter().zip(&from).filter(|(_, f)| f.is_none()).map(|(c, _)| c.name.clone()).collect();
        let dropped = (0..stored.len()).filter(|&i| !used[i]).map(|i| (i, stored[i].clone())).collect();
        Some(Self { from, renamed, added, dropped })
    }

    /// A record's array in the current order; `None` when `data` is not an array of strings
    /// (left as it is).
    pub fn apply(&self, data: &str) -> Option<String> {
        let stored: Vec<String> = serde_json::from_str(data).ok()?;
        let mut out = String::with_capacity(data.len() + 3 * self.added.len());
        encode_values(
            self.from.iter().map(|f| f.and_then(|i| stored.get(i)).map_or("", String::as_str)),
            &mut out,
        );
        Some(out)
    }

    /// Which dropped columns hold a value in `data` (positions into [`Self::dropped`]).
    pub fn lost_in(&self, data: &str) -> Vec<usize> {
        let Ok(stored) = serde_json::from_str::<Vec<String>>(data) else { return Vec::new() };
        self.dropped
            .iter()
            .enumerate()
            .filter(|(_, (i, _))| stored.get(*i).is_some_and(|v| !v.is_empty()))
            .map(|(n, _)| n)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::ImportTypes;

    fn kids(columns: &str) -> ImportType {
        let text = format!(
            "[[type]]\nname = \"kids\"\nfolder = \"kids\"\nkey = [\"id\"]\nmode = \"mirror\"\n{columns}"
        );
        ImportTypes::parse(&[("t.toml".into(), text)]).expect("a type").get("kids").expect("kids").clone()
    }

    fn column(name: &str, aliases: &[&str]) -> String {
        let aliases: Vec<String> = aliases.iter().map(|a| format!("{a:?}")).collect();
        let required = name == "id";
        format!(
            "[[type.column]]\nname = {name:?}\nkind = \"text\"\nrequired = {required}\naliases = [{}]\n",
            aliases.join(", ")
        )
    }

    #[test]
    fn arrays_follow_inserted_moved_renamed_and_removed_columns() {
        let stored: Vec<String> = ["id", "email", "Grade", "note"].map(String::from).to_vec();
        let same = kids(
            &[column("id", &[]), column("email", &[]), column("Grade", &[]), column("note", &[])].concat(),
        );
        assert_eq!(Relayout::between(&stored, &same), None);
        // `phone` inserted, `grade` in another case, `email` renamed to `mail` (alias), `note` gone.
        let t = kids(
            &[column("id", &[]), column("phone", &[]), column("grade", &[]), column("mail", &["Email"])]
                .concat(),
        );
        let r = Relayout::between(&stored, &t).expect("a change");
        assert_eq!(r.added, ["phone"]);
        assert_eq!(
            r.renamed,
            [("Grade".to_owned(), "grade".to_owned()), ("email".to_owned(), "mail".to_owned())]
        );
        assert_eq!(r.dropped, [(3, "note".to_owned())]);
        let data = r#"["K1","a@x.org","3","says \"hi\""]"#;
        assert_eq!(r.apply(data).as_deref(), Some(r#"["K1","","3","a@x.org"]"#));
        assert_eq!(r.lost_in(data), [0]);
        assert!(r.lost_in(r#"["K2","","",""]"#).is_empty());
        // An array shorter than its layout (columns appended since): what it lacks is empty.
        assert_eq!(r.apply(r#"["K3"]"#).as_deref(), Some(r#"["K3","","",""]"#));
        // What is not an array of strings is left alone.
        assert_eq!(r.apply(r#"{"sourcedId":"x"}"#), None);
        // The hash is the one an import computes for the same array.
        let mut encoded = String::new();
        encode_values(["K1", "", "3", "a@x.org"].into_iter(), &mut encoded);
        assert_eq!(r.apply(data), Some(encoded));
    }

    #[test]
    fn a_name_in_another_case_comes_before_an_alias() {
        let stored: Vec<String> = ["id", "name", "fullname", "\u{c9}l\u{e8}ve"].map(String::from).to_vec();
        let t = kids(
            &[column("id", &[]), column("fullName", &["name"]), column("\u{e9}l\u{e8}ve", &[])].concat(),
        );
        let r = Relayout::between(&stored, &t).expect("a change");
        assert_eq!(r.apply(r#"["K1","n","f","e"]"#).as_deref(), Some(r#"["K1","f","e"]"#));
        assert_eq!(r.dropped, [(1, "name".to_owned())]);
    }

    #[test]
    fn an_alias_never_takes_a_column_that_kept_its_name() {
        let stored: Vec<String> = ["id", "email", "mail"].map(String::from).to_vec();
        let t = kids(&[column("id", &[]), column("mail", &[]), column("email2", &["email"])].concat());
        let r = Relayout::between(&stored, &t).expect("a change");
        assert_eq!(r.apply(r#"["K1","e","m"]"#).as_deref(), Some(r#"["K1","m","e"]"#));
        assert!(r.dropped.is_empty());
    }
}
