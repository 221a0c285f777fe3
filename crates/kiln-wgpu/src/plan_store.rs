//! The plan cache's storage: compiled plans by graph signature, bounded by the device bytes
//! their intermediate buffers hold, the least recently used evicted first.
//!
//! A training loop replays one or two plans for its whole life, but a server or a sweep that sees
//! many batch sizes and image sizes compiles a plan for each, and every plan keeps its
//! intermediate buffers (its liveness slots) for as long as it is cached. Without a bound, device
//! memory grows with every new shape. An evicted plan's buffers go back to the buffer pool, whose
//! free buffers share the budget: the backend lets the pool keep what the plans leave of it
//! (see [`crate::pool::BufferPool::set_budget`]).

use crate::plan_cache::CompiledPlan;
use std::collections::HashMap;
use std::sync::Arc;

/// Default bound on the bytes held by cached plans: 1 GiB, which fits a laptop GPU and holds
/// ResNet-20's training plan at batch 128 beside its evaluation plan.
pub const DEFAULT_PLAN_CACHE_BYTES: u64 = 1 << 30;

/// Compiled plans by signature with least-recently-used eviction by bytes.
pub struct PlanStore {
    plans: HashMap<String, Entry>,
    budget: u64,
    bytes: u64,
    clock: u64,
}

struct Entry {
    plan: Arc<CompiledPlan>,
    last_used: u64,
}

impl PlanStore {
    /// An empty store that keeps at most `budget` bytes of plans (always the newest plan, even
    /// when it alone is larger).
    pub fn new(budget: u64) -> PlanStore {
        PlanStore {
            plans: HashMap::new(),
            budget,
            bytes: 0,
            clock: 0,
        }
    }

    /// The plan of `signature`, marked as just used.
    pub fn get(&mut self, signature: &str) -> Option<Arc<CompiledPlan>> {
        self.clock += 1;
        let e = self.plans.get_mut(signature)?;
        e.last_used = self.clock;
        Some(e.plan.clone())
    }

    /// Evicts the least recently used plans until `bytes` more fit in the budget (or none is
    /// left); returns how many were evicted. Called before a new plan takes its buffers, so that
    /// the plans it replaces give theirs back first.
    pub fn make_room(&mut self, bytes: u64) -> u64 {
        let mut evicted = 0;
        while self.bytes + bytes > self.budget && self.evict_oldest(None) {
            evicted += 1;
        }
        evicted
    }

    /// Adds a plan (replacing one of the same signature) and evicts the least recently used
    /// others until the store is within its budget; returns how many were evicted. An evicted
    /// plan that another thread is still replaying lives until that replay ends.
    pub fn insert(&mut self, signature: String, plan: Arc<CompiledPlan>) -> u64 {
        self.clock += 1;
        self.bytes += plan.footprint();
        let entry = Entry {
            plan,
            last_used: self.clock,
        };
        if let Some(old) = self.plans.insert(signature.clone(), entry) {
            self.bytes -= old.plan.footprint();
        }
        let mut evicted = 0;
        while self.bytes > self.budget && self.evict_oldest(Some(&signature)) {
            evicted += 1;
        }
        evicted
    }

    /// Evicts the least recently used plan other than `keep`; false when there is none.
    fn evict_oldest(&mut self, keep: Option<&str>) -> bool {
        let oldest = self
            .plans
            .iter()
            .filter(|(s, _)| Some(s.as_str()) != keep)
            .min_by_key(|(_, e)| e.last_used)
            .map(|(s, _)| s.clone());
        let Some(oldest) = oldest else {
            return false;
        };
        let e = self.plans.remove(&oldest).expect("present");
        self.bytes -= e.plan.footprint();
        true
    }

    /// The bound on the bytes of the plans held.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Device bytes the held plans keep (see [`CompiledPlan::footprint`]).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}
