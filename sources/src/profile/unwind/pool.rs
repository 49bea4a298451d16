//! The row pool's free space: contiguous ranges handed to file tables,
//! first fit, neighbours merged when freed. Which table to evict when a new
//! one does not fit is the caller's choice (least recently used).

/// A range of rows: `[first, first + count)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub first: u32,
    pub count: u32,
}

/// Free ranges of a pool of `capacity` rows.
#[derive(Debug)]
pub struct Pool {
    capacity: u32,
    /// Sorted by `first`, never adjacent (merged).
    free: Vec<Range>,
}

impl Pool {
    /// An empty pool of `capacity` rows.
    pub fn new(capacity: u32) -> Self {
        Pool {
            capacity,
            free: vec![Range {
                first: 0,
                count: capacity,
            }],
        }
    }

    /// Rows in use.
    pub fn used(&self) -> u32 {
        self.capacity - self.free.iter().map(|r| r.count).sum::<u32>()
    }

    /// `count` contiguous rows, or `None` when no free range is that long.
    pub fn allocate(&mut self, count: u32) -> Option<Range> {
        let index = self.free.iter().position(|r| r.count >= count)?;
        let range = &mut self.free[index];
        let out = Range {
            first: range.first,
            count,
        };
        range.first += count;
        range.count -= count;
        if range.count == 0 {
            self.free.remove(index);
        }
        Some(out)
    }

    /// Gives `range` back.
    pub fn release(&mut self, range: Range) {
        if range.count == 0 {
            return;
        }
        let index = self.free.partition_point(|r| r.first < range.first);
        self.free.insert(index, range);
        // Merge with the next, then with the previous.
        if index + 1 < self.free.len() && self.free[index].first + self.free[index].count == self.free[index + 1].first
        {
            self.free[index].count += self.free[index + 1].count;
            self.free.remove(index + 1);
        }
        if index > 0 && self.free[index - 1].first + self.free[index - 1].count == self.free[index].first {
            self.free[index - 1].count += self.free[index].count;
            self.free.remove(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn freed_neighbours_merge() {
        let mut pool = Pool::new(100);
        let a = pool.allocate(30).unwrap();
        let b = pool.allocate(30).unwrap();
        let c = pool.allocate(40).unwrap();
        assert_eq!(pool.allocate(1), None);
        pool.release(a);
        pool.release(c);
        assert_eq!(pool.allocate(50), None, "30 + 40 free, not contiguous");
        pool.release(b);
        assert_eq!(pool.used(), 0);
        assert_eq!(pool.allocate(100), Some(Range { first: 0, count: 100 }));
    }

    proptest! {
        /// Whatever the order of allocations and releases, ranges never
        /// overlap and the free space adds up.
        #[test]
        fn ranges_never_overlap(ops in proptest::collection::vec((1u32..40, any::<bool>()), 1..200)) {
            let mut pool = Pool::new(256);
            let mut held: Vec<Range> = Vec::new();
            for (count, release) in ops {
                if release && !held.is_empty() {
                    pool.release(held.remove(count as usize % held.len()));
                } else if let Some(r) = pool.allocate(count) {
                    prop_assert!(r.first + r.count <= 256);
                    for h in &held {
                        prop_assert!(r.first + r.count <= h.first || h.first + h.count <= r.first);
                    }
                    held.push(r);
                }
                prop_assert_eq!(pool.used(), held.iter().map(|r| r.count).sum::<u32>());
            }
        }
    }
}
