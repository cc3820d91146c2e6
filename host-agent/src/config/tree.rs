//! The document's shape with the spans errors point at, built once from toml_edit's (which has
//! four kinds of table and array) so that lookups need know only three.

use std::ops::Range;

/// A table, an array of tables, or a value, with its span.
pub(super) struct Node {
    /// The whole item: a table from its header, a value as written.
    pub(super) span: Option<Range<usize>>,
    pub(super) shape: Shape,
}

pub(super) enum Shape {
    Table(Vec<Entry>),
    /// An array of tables (`[[pair.vip]]`, or an array of inline tables).
    Array(Vec<Node>),
    Value,
}

pub(super) struct Entry {
    pub(super) name: String,
    pub(super) key: Range<usize>,
    pub(super) node: Node,
}

impl Node {
    pub(super) fn leaf(span: Option<Range<usize>>) -> Node {
        Node { span, shape: Shape::Value }
    }

    fn of_table(span: Option<Range<usize>>, t: &dyn toml_edit::TableLike) -> Node {
        let entries = t
            .iter()
            .filter_map(|(name, _)| t.get_key_value(name).map(|(key, item)| (name, key, item)))
            .map(|(name, key, item)| {
                let node = Node::of_item(item);
                let key = key.span().or_else(|| node.span.clone()).unwrap_or(0..0);
                Entry { name: name.to_string(), key, node }
            })
            .collect();
        Node { span, shape: Shape::Table(entries) }
    }

    pub(super) fn of_item(item: &toml_edit::Item) -> Node {
        use toml_edit::{Item, Value};
        match item {
            Item::Table(t) => Node::of_table(t.span(), t),
            Item::ArrayOfTables(a) => {
                Node { span: a.span(), shape: Shape::Array(a.iter().map(|t| Node::of_table(t.span(), t)).collect()) }
            }
            Item::Value(Value::InlineTable(t)) => Node::of_table(t.span(), t),
            Item::Value(Value::Array(a)) if !a.is_empty() && a.iter().all(|v| v.is_inline_table()) => Node {
                span: a.span(),
                shape: Shape::Array(
                    a.iter().filter_map(|v| v.as_inline_table()).map(|t| Node::of_table(t.span(), t)).collect(),
                ),
            },
            Item::Value(v) => Node::leaf(v.span()),
            Item::None => Node::leaf(None),
        }
    }

    pub(super) fn entries(&self) -> &[Entry] {
        match &self.shape {
            Shape::Table(e) => e,
            _ => &[],
        }
    }

    pub(super) fn child(&self, seg: &str) -> Option<(Option<Range<usize>>, &Node)> {
        match &self.shape {
            Shape::Table(entries) => entries.iter().find(|e| e.name == seg).map(|e| (Some(e.key.clone()), &e.node)),
            Shape::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)).map(|n| (None, n)),
            Shape::Value => None,
        }
    }

    fn contains(&self, offset: usize) -> bool {
        if self.span.as_ref().is_some_and(|s| s.contains(&offset)) {
            return true;
        }
        // Implicit and dotted tables have no span of their own: look at what they hold.
        match &self.shape {
            Shape::Table(entries) => entries.iter().any(|e| e.key.contains(&offset) || e.node.contains(offset)),
            Shape::Array(items) => items.iter().any(|n| n.contains(offset)),
            Shape::Value => false,
        }
    }

    /// The node at `path` (see [`super::Source::error`] for how paths are written).
    pub(super) fn find(&self, path: &str) -> Option<&Node> {
        path.split('.').filter(|s| !s.is_empty()).try_fold(self, |n, seg| n.child(seg).map(|(_, c)| c))
    }

    /// The deepest key whose text holds `offset`, as a path for [`super::Source::error`].
    pub(super) fn path_at(&self, offset: usize) -> String {
        let mut path = Vec::new();
        let mut node = self;
        'down: loop {
            match &node.shape {
                Shape::Table(entries) => {
                    for e in entries {
                        if e.key.contains(&offset) || e.node.contains(offset) {
                            path.push(e.name.clone());
                            node = &e.node;
                            continue 'down;
                        }
                    }
                }
                Shape::Array(items) => {
                    for (i, t) in items.iter().enumerate() {
                        if t.contains(offset) {
                            path.push(i.to_string());
                            node = t;
                            continue 'down;
                        }
                    }
                }
                Shape::Value => {}
            }
            return path.join(".");
        }
    }
}
