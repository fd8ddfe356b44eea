//! Follow graphs: who follows whom, by user index.
//!
//! - `celebrity`: the first P users are followed by everyone else;
//! - `uniform`: every user follows k distinct others chosen uniformly;
//! - `zipf`: every user follows k distinct others chosen with probability
//!   proportional to 1/rank^s, so follower counts follow a power law, as
//!   on Twitter.
//!
//! Graphs are deterministic for a seed, so a plan can be rebuilt exactly
//! by `setup` and by `run`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A follow graph over users `0..n`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Graph {
    /// `followers[u]`: the users who follow `u`, ascending, no duplicates.
    pub followers: Vec<Vec<u32>>,
}

impl Graph {
    /// A graph with no edges.
    pub fn empty(n: usize) -> Self {
        Self {
            followers: vec![Vec::new(); n],
        }
    }

    /// Users.
    pub fn len(&self) -> usize {
        self.followers.len()
    }

    /// Whether there are no users.
    pub fn is_empty(&self) -> bool {
        self.followers.is_empty()
    }

    /// Edges (follows).
    pub fn edges(&self) -> usize {
        self.followers.iter().map(Vec::len).sum()
    }

    /// Adds the edges of `other` (same users).
    pub fn union(mut self, other: &Graph) -> Self {
        for (mine, theirs) in self.followers.iter_mut().zip(&other.followers) {
            mine.extend_from_slice(theirs);
            mine.sort_unstable();
            mine.dedup();
        }
        self
    }

    /// The first `p` users, followed by every other user.
    pub fn celebrity(n: usize, p: usize) -> Self {
        let mut g = Self::empty(n);
        for c in 0..p.min(n) {
            g.followers[c] = (0..n as u32).filter(|&u| u as usize != c).collect();
        }
        g
    }

    /// Each user follows `k` distinct others, uniformly at random.
    pub fn uniform(n: usize, k: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        Self::sampled(n, k, |_| rng.gen_range(0..n))
    }

    /// Each user follows `k` distinct others, with probability proportional
    /// to 1/(rank+1)^s; rank 0 is user 0.
    pub fn zipf(n: usize, k: usize, s: f64, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        // Inverse-CDF sampling over the cumulative weights.
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for r in 0..n {
            total += 1.0 / ((r + 1) as f64).powf(s);
            cdf.push(total);
        }
        Self::sampled(n, k, |_| {
            let x = rng.gen::<f64>() * total;
            cdf.partition_point(|&c| c < x).min(n - 1)
        })
    }

    fn sampled(n: usize, k: usize, mut pick: impl FnMut(usize) -> usize) -> Self {
        let mut g = Self::empty(n);
        let k = k.min(n.saturating_sub(1));
        for u in 0..n {
            let mut chosen: Vec<usize> = Vec::with_capacity(k);
            // Bounded retries: dense graphs may not find k distinct fast.
            let mut tries = 0;
            while chosen.len() < k && tries < k * 50 + 100 {
                tries += 1;
                let v = pick(u);
                if v != u && !chosen.contains(&v) {
                    chosen.push(v);
                }
            }
            for v in chosen {
                g.followers[v].push(u as u32);
            }
        }
        for f in &mut g.followers {
            f.sort_unstable();
        }
        g
    }

    /// Every follow made mutual: a presence follow is `both` (PROTOCOL §3
    /// item 5), so each side receives the other's posts.
    pub fn symmetric(&self) -> Self {
        let mut g = self.clone();
        for (p, followers) in self.followers.iter().enumerate() {
            for &f in followers {
                g.followers[f as usize].push(p as u32);
            }
        }
        for f in &mut g.followers {
            f.sort_unstable();
            f.dedup();
        }
        g
    }

    /// Who `u` follows.
    pub fn following(&self, u: u32) -> Vec<u32> {
        self.followers
            .iter()
            .enumerate()
            .filter(|(_, f)| f.binary_search(&u).is_ok())
            .map(|(p, _)| p as u32)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn celebrity_is_followed_by_everyone_else() {
        let g = Graph::celebrity(100, 2);
        assert_eq!(g.followers[0].len(), 99);
        assert_eq!(g.followers[1].len(), 99);
        assert!(!g.followers[0].contains(&0));
        assert!(g.followers[2].is_empty());
        assert_eq!(g.edges(), 198);
    }

    #[test]
    fn uniform_out_degree_is_k_and_in_degree_is_flat() {
        let (n, k) = (2000, 10);
        let g = Graph::uniform(n, k, 7);
        assert_eq!(g.edges(), n * k, "every user follows exactly k");
        for u in 0..n as u32 {
            assert!(!g.followers[u as usize].contains(&u), "no self-follow");
        }
        let max = g.followers.iter().map(Vec::len).max().unwrap();
        // Binomial(n-1, k/(n-1)): mean 10; 40 would be absurd.
        assert!(max < 40, "in-degree is flat, max {max}");
        assert_eq!(g, Graph::uniform(n, k, 7), "deterministic for a seed");
    }

    #[test]
    fn zipf_in_degree_follows_a_power_law() {
        let (n, k) = (2000, 10);
        let g = Graph::zipf(n, k, 1.0, 7);
        assert_eq!(g.edges(), n * k);
        let deg: Vec<usize> = g.followers.iter().map(Vec::len).collect();
        // The head dominates: rank 0 has far more followers than rank 100,
        // and roughly twice rank 1's (1/1 vs 1/2), within sampling noise.
        assert!(deg[0] > 10 * deg[100].max(1), "{} vs {}", deg[0], deg[100]);
        let ratio = deg[0] as f64 / deg[1] as f64;
        assert!((1.4..2.8).contains(&ratio), "rank 0 / rank 1 = {ratio}");
        let top10: usize = deg[..10].iter().sum();
        assert!(top10 * 4 > n * k / 2, "the top 10 hold a large share");
    }

    #[test]
    fn symmetric_makes_every_follow_mutual() {
        let g = Graph::celebrity(5, 1).symmetric();
        assert_eq!(g.followers[0], [1, 2, 3, 4]);
        assert_eq!(g.followers[3], [0]);
        assert_eq!(g.edges(), 8);
    }

    #[test]
    fn union_merges_without_duplicates() {
        let g = Graph::celebrity(10, 1).union(&Graph::uniform(10, 3, 1));
        let f0 = &g.followers[0];
        assert_eq!(f0.len(), 9);
        assert!(f0.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(g.following(5).first(), Some(&0));
    }
}
