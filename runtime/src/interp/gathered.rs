//! A node as the dispatch sees it on gathered entries (a head-masked core's active rows, a
//! sparse FFN's active blocks): its gathered operands, everything else as the node itself,
//! so the node's own protocol runs on them at its widths.

use std::borrow::Cow;

use comet_ir::Op;
use comet_ir::protocol::Protocol;
use ndarray::{Array2, ArrayD};

use super::InterpError;
use super::start::At;
use crate::protocols::cache_masked::Prior;
use crate::protocols::dispatch::Node;
use crate::protocols::fixed::FixedOperand;
use crate::protocols::{PartyId, Share};

/// A node on gathered entries: its gathered operands, the rest as the node itself.
pub(super) struct Gathered<'r, 'a> {
    pub at: At<'r, 'a>,
    pub xs: Vec<Share>,
}

impl Node for Gathered<'_, '_> {
    type Error = InterpError;

    fn party(&self) -> PartyId {
        self.at.party()
    }
    fn protocol(&self) -> Protocol {
        self.at.protocol()
    }
    fn op(&self) -> &Op {
        self.at.op()
    }
    fn fail(&self, message: String) -> InterpError {
        self.at.fail(message)
    }
    fn share(&self, k: usize) -> Result<&Share, InterpError> {
        (self.xs.get(k)).ok_or_else(|| self.fail(format!("no operand {k}")))
    }
    fn revealed(&self, k: usize) -> Result<Cow<'_, Share>, InterpError> {
        self.share(k).map(Cow::Borrowed)
    }
    fn block_mask(&self, k: usize) -> Result<Array2<bool>, InterpError> {
        self.at.block_mask(k)
    }
    fn fixed_index(&self) -> Option<usize> {
        self.at.fixed_index()
    }
    fn fixed_operand(&self) -> Result<&FixedOperand, InterpError> {
        self.at.fixed_operand()
    }
    fn opened_rows(&self, slot: u32) -> Option<&ArrayD<u64>> {
        self.at.opened_rows(slot)
    }
    fn slot_rows(&self, slot: u32) -> Option<Prior<'_>> {
        self.at.slot_rows(slot)
    }
    fn naive_refill(&self) -> bool {
        self.at.naive_refill()
    }
    fn scale(&self) -> u32 {
        self.at.scale()
    }
    fn operand_scale(&self, k: usize) -> u32 {
        self.at.operand_scale(k)
    }
    fn operand_count(&self) -> usize {
        self.at.operand_count()
    }
    fn width(&self) -> u32 {
        self.at.width()
    }
    fn opens_at_cmp_width(&self) -> bool {
        self.at.opens_at_cmp_width()
    }
}
