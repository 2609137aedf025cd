//! Side tables: analysis results keyed by node, kept out of the nodes themselves.

use crate::graph::NodeId;
use std::collections::BTreeMap;

/// A map from nodes to analysis facts, iterated in node order.
#[derive(Debug, Clone, PartialEq)]
pub struct SideTable<T> {
    map: BTreeMap<NodeId, T>,
}

impl<T> Default for SideTable<T> {
    fn default() -> Self {
        SideTable {
            map: BTreeMap::new(),
        }
    }
}

impl<T> SideTable<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a fact, replacing any earlier one.
    pub fn insert(&mut self, id: NodeId, v: T) {
        self.map.insert(id, v);
    }

    /// The fact recorded for `id`.
    pub fn get(&self, id: NodeId) -> Option<&T> {
        self.map.get(&id)
    }

    /// The fact recorded for `id`, to change it.
    pub fn get_mut(&mut self, id: NodeId) -> Option<&mut T> {
        self.map.get_mut(&id)
    }

    /// All facts in node order.
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, &T)> {
        self.map.iter().map(|(k, v)| (*k, v))
    }

    /// Number of facts.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there is no fact.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
