//! The KV block pool as the scheduler sees it: which blocks are free, which belong to
//! which sequences, and which full blocks hold a prefix worth keeping.
//!
//! A full block is known by a hash of its tokens chained with the hash of every block
//! before it, so equal hashes mean equal prefixes (the tokens are kept too and compared,
//! so a hash collision cannot hand out the wrong KV). Blocks are reference-counted: a
//! prefix block can sit in many sequences' tables at once. When the last sequence lets go
//! of a hashed block it stays cached (its KV is still valid) until the pool needs it,
//! least recently used first; unhashed blocks go straight back to the free list.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{Hash, Hasher};

/// The hash of a full block: its tokens and the hash of the block before it (0 for the
/// first block of a sequence).
pub fn block_hash(parent: u64, tokens: &[u32]) -> u64 {
    // SipHash with fixed keys: the same on every run
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new_with_keys(0x6865_6164, 0x726f_6f6d);
    parent.hash(&mut h);
    tokens.hash(&mut h);
    // 0 marks "no parent"
    h.finish().max(1)
}

/// A cached block: its prefix hash and tokens, and when it was last used.
#[derive(Clone, Debug)]
struct CachedBlock {
    hash: u64,
    tokens: Vec<u32>,
    last_use: u64,
}

#[derive(Debug)]
pub struct BlockPool {
    block_size: usize,
    /// sequences holding each block
    refs: Vec<u32>,
    /// blocks that hold nothing worth keeping
    free: VecDeque<u32>,
    /// hashed blocks, in use or cached
    cached: HashMap<u32, CachedBlock>,
    by_hash: HashMap<u64, u32>,
    /// unreferenced hashed blocks by last use: evicted oldest first
    evictable: BTreeMap<u64, u32>,
    clock: u64,
}

impl BlockPool {
    pub fn new(blocks: usize, block_size: usize) -> Self {
        BlockPool {
            block_size,
            refs: vec![0; blocks],
            free: (0..blocks as u32).collect(),
            cached: HashMap::new(),
            by_hash: HashMap::new(),
            evictable: BTreeMap::new(),
            clock: 0,
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn total(&self) -> usize {
        self.refs.len()
    }

    /// Blocks a new allocation can take: free ones and evictable cached ones.
    pub fn available(&self) -> usize {
        self.free.len() + self.evictable.len()
    }

    /// Blocks held by at least one sequence.
    pub fn used(&self) -> usize {
        self.total() - self.available()
    }

    /// Unreferenced blocks kept for their prefix.
    pub fn cached_idle(&self) -> usize {
        self.evictable.len()
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// A block for one sequence: a free one, else the least recently used cached one
    /// (which forgets its prefix). None when every block is in use.
    pub fn allocate(&mut self) -> Option<u32> {
        let b = match self.free.pop_front() {
            Some(b) => b,
            None => {
                let (_, b) = self.evictable.pop_first()?;
                let c = self.cached.remove(&b).expect("evictable blocks are cached");
                self.by_hash.remove(&c.hash);
                b
            }
        };
        self.refs[b as usize] = 1;
        Some(b)
    }

    /// Lets go of one sequence's hold on `b`.
    pub fn release(&mut self, b: u32) {
        let r = &mut self.refs[b as usize];
        assert!(*r > 0, "block {b} released more often than held");
        *r -= 1;
        if *r > 0 {
            return;
        }
        let t = self.tick();
        match self.cached.get_mut(&b) {
            Some(c) => {
                c.last_use = t;
                self.evictable.insert(t, b);
            }
            None => self.free.push_back(b),
        }
    }

    /// The cached block with this prefix hash and these tokens, now also held by the
    /// caller.
    pub fn lookup(&mut self, hash: u64, tokens: &[u32]) -> Option<u32> {
        let &b = self.by_hash.get(&hash)?;
        let c = self.cached.get(&b)?;
        if c.tokens != tokens {
            return None;
        }
        let last_use = c.last_use;
        if self.refs[b as usize] == 0 {
            self.evictable.remove(&last_use);
        }
        self.refs[b as usize] += 1;
        let t = self.tick();
        if let Some(c) = self.cached.get_mut(&b) {
            c.last_use = t;
        }
        Some(b)
    }

    /// Records that `b` (held by the caller) is full with the KV of `tokens` after the
    /// prefix `parent`, so later sequences can reuse it. Returns the block's hash. A block
    /// whose prefix is already cached elsewhere stays unhashed (one copy is enough).
    pub fn register(&mut self, b: u32, parent: u64, tokens: &[u32]) -> u64 {
        debug_assert_eq!(tokens.len(), self.block_size);
        let hash = block_hash(parent, tokens);
        if self.by_hash.contains_key(&hash) || self.cached.contains_key(&b) {
            return hash;
        }
        let last_use = self.tick();
        self.by_hash.insert(hash, b);
        self.cached.insert(
            b,
            CachedBlock {
                hash,
                tokens: tokens.to_vec(),
                last_use,
            },
        );
        hash
    }

    /// Forgets every cached prefix (their blocks become free once unreferenced).
    pub fn clear_cache(&mut self) {
        for (_, b) in std::mem::take(&mut self.evictable) {
            self.free.push_back(b);
        }
        self.cached.clear();
        self.by_hash.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocate_release_and_reuse_of_a_cached_prefix() {
        let mut p = BlockPool::new(4, 2);
        let a = p.allocate().unwrap();
        let b = p.allocate().unwrap();
        assert_eq!((p.used(), p.available()), (2, 2));
        let h = p.register(a, 0, &[1, 2]);
        p.register(b, h, &[3, 4]);
        p.release(a);
        p.release(b);
        // both stay cached, and can be found again by their chained hashes
        assert_eq!((p.used(), p.cached_idle()), (0, 2));
        assert_eq!(p.lookup(h, &[1, 2]), Some(a));
        assert_eq!(p.lookup(block_hash(h, &[3, 4]), &[3, 4]), Some(b));
        assert_eq!(p.used(), 2);
        // same hash, other tokens: no hit; another parent: no hit
        assert_eq!(p.lookup(h, &[9, 9]), None);
        assert_eq!(p.lookup(block_hash(7, &[3, 4]), &[3, 4]), None);
    }

    #[test]
    fn eviction_takes_the_least_recently_used_cached_block() {
        let mut p = BlockPool::new(3, 1);
        let blocks: Vec<u32> = (0..3).map(|_| p.allocate().unwrap()).collect();
        let hashes: Vec<u64> = blocks
            .iter()
            .enumerate()
            .map(|(i, &b)| p.register(b, 0, &[i as u32]))
            .collect();
        assert_eq!(p.allocate(), None);
        for &b in &blocks {
            p.release(b);
        }
        // touch block 0: block 1 is now the oldest
        let b0 = p.lookup(hashes[0], &[0]).unwrap();
        p.release(b0);
        assert_eq!(p.allocate(), Some(blocks[1]));
        assert_eq!(
            p.lookup(hashes[1], &[1]),
            None,
            "evicted prefix is forgotten"
        );
        assert_eq!(p.allocate(), Some(blocks[2]));
        assert_eq!(p.allocate(), Some(blocks[0]));
        assert_eq!(p.allocate(), None);
    }

    #[test]
    fn shared_blocks_are_freed_by_the_last_holder_only() {
        let mut p = BlockPool::new(2, 1);
        let a = p.allocate().unwrap();
        let h = p.register(a, 0, &[5]);
        assert_eq!(p.lookup(h, &[5]), Some(a)); // a second holder
        p.release(a);
        assert_eq!(p.cached_idle(), 0, "still held");
        p.release(a);
        assert_eq!(p.cached_idle(), 1);
        // an unhashed block goes back to the free list
        let b = p.allocate().unwrap();
        p.release(b);
        assert_eq!((p.available(), p.cached_idle()), (2, 1));
    }

    #[test]
    fn a_duplicate_prefix_is_registered_once() {
        let mut p = BlockPool::new(2, 1);
        let a = p.allocate().unwrap();
        let b = p.allocate().unwrap();
        let h = p.register(a, 0, &[1]);
        assert_eq!(p.register(b, 0, &[1]), h);
        p.release(b);
        assert_eq!(p.cached_idle(), 0, "the duplicate is not kept");
        p.clear_cache();
        p.release(a);
        assert_eq!((p.available(), p.cached_idle()), (2, 0));
    }
}
