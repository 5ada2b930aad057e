//! Shared prefixes computed once. Requests whose model inputs begin with the same tokens (a document's choices after
//! one premise, every choice after one few-shot context) are scored in one row: the row holds the prefix tree of
//! their inputs, each distinct prefix once, and each token attends only to its ancestors, at the position it has in
//! its own sequence. Every token therefore sees exactly what it sees when its request runs alone, so its
//! log-probability is the same up to float noise (the sums of attention run over a longer, masked row).
//!
//! lm-eval has no counterpart: its `Collator` (`lm_eval/models/utils.py`) can group requests by context
//! (`group_by="contexts"`) but then scores the group's requests as separate rows; only the one-token continuation
//! case is shared there.

use crate::TokenRequest;

/// How much of a request a row must share to take it in: at least a quarter of its input. Sharing less saves less
/// than the longer attention rows cost.
const MIN_SHARED_FRACTION: usize = 4;

/// Requests grouped into rows: indices into the input list, and the number of tree nodes (tokens a forward pass
/// runs) each row needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Indices of the row's requests, in the order their inputs sort.
    pub members: Vec<usize>,
    /// Tokens of the row's prefix tree.
    pub nodes: usize,
}

/// Groups model inputs (`TokenRequest::model_input`'s token lists) into rows of requests that share a prefix. The
/// inputs are sorted by their token ids, so each input shares the most with its neighbours; an input joins the row of
/// the one before it when they share at least a quarter of it and the row stays within twice the longest input's
/// length (room for a document's choices after a long premise, while a batch of rows stays at most twice as wide as
/// the same number of single requests). Every input is in exactly one row; the grouping depends on the inputs alone,
/// never on batch sizes.
pub fn share_prefixes(inputs: &[&[u32]]) -> Vec<Row> {
    let mut order: Vec<usize> = (0..inputs.len()).collect();
    order.sort_by(|&a, &b| inputs[a].cmp(inputs[b]).then(a.cmp(&b)));
    let cap = 2 * inputs.iter().map(|input| input.len()).max().unwrap_or(0);
    let mut rows: Vec<Row> = Vec::new();
    let mut previous: Option<&[u32]> = None;
    for index in order {
        let input = inputs[index];
        let shared = previous.map_or(0, |p| common_prefix(p, input));
        let added = input.len() - shared;
        match rows.last_mut() {
            Some(row) if shared * MIN_SHARED_FRACTION >= input.len() && shared > 0 && row.nodes + added <= cap => {
                row.members.push(index);
                row.nodes += added;
            }
            _ => rows.push(Row { members: vec![index], nodes: input.len() }),
        }
        previous = Some(input);
    }
    rows
}

/// The length of the common prefix of two token lists.
fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// One row's prefix tree, flattened so that every node comes after its parent: what a backend runs in one forward
/// pass instead of one sequence per request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixTree {
    /// Token id of each node.
    pub tokens: Vec<u32>,
    /// Position of each node in its sequences (its depth: 0 for the first token), for rotary embeddings.
    pub positions: Vec<u32>,
    /// Each node's parent, `None` for a first token.
    pub parents: Vec<Option<usize>>,
    /// Per request, in the row's order: the nodes whose outputs predict its scored tokens, and those tokens (the
    /// last `scored` tokens of the continuation).
    pub scored: Vec<Vec<(usize, u32)>>,
}

impl PrefixTree {
    /// The tree of `row`'s model inputs at context window `max_length`; the requests may come in any order.
    pub fn new(row: &[TokenRequest], max_length: usize) -> Self {
        let inputs: Vec<(Vec<u32>, usize)> = row.iter().map(|r| r.model_input(max_length)).collect();
        let mut order: Vec<usize> = (0..row.len()).collect();
        order.sort_by(|&a, &b| inputs[a].0.cmp(&inputs[b].0).then(a.cmp(&b)));
        let mut tree = Self { tokens: Vec::new(), positions: Vec::new(), parents: Vec::new(), scored: Vec::new() };
        let mut scored = vec![Vec::new(); row.len()];
        // The nodes of the previous input's path, by depth: in sorted order an input shares with every earlier one
        // at most what it shares with the one just before it, so that path is where it branches off.
        let mut path: Vec<usize> = Vec::new();
        let mut previous: &[u32] = &[];
        for index in order {
            let (input, count) = &inputs[index];
            let shared = common_prefix(previous, input);
            path.truncate(shared);
            for (depth, &token) in input.iter().enumerate().skip(shared) {
                tree.parents.push(path.last().copied());
                tree.tokens.push(token);
                tree.positions.push(depth as u32);
                path.push(tree.tokens.len() - 1);
            }
            let continuation = &row[index].continuation;
            let targets = &continuation[continuation.len() - count..];
            let first = input.len() - count;
            scored[index] = targets.iter().enumerate().map(|(k, &target)| (path[first + k], target)).collect();
            previous = input;
        }
        tree.scored = scored;
        tree
    }

    /// Tokens in the tree.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the tree has no token.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Whether the tree is one sequence (each node's parent is the node before it): then plain causal attention is
    /// exact and positions are `0..len`.
    pub fn is_chain(&self) -> bool {
        self.parents.iter().enumerate().all(|(i, p)| *p == i.checked_sub(1))
    }

    /// The nodes node `node` attends to: itself and its ancestors, nearest first.
    pub fn visible(&self, node: usize) -> impl Iterator<Item = usize> + '_ {
        std::iter::successors(Some(node), move |&n| self.parents[n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(context: &[u32], continuation: &[u32]) -> TokenRequest {
        TokenRequest { context: context.to_vec(), continuation: continuation.to_vec() }
    }

    #[test]
    fn a_documents_choices_share_their_premise_in_one_tree() {
        // Inputs (the last token dropped): [1 5 6 7 8 20], [1 5 6 7 8 30 31], [1 5 6 7 8 40].
        let row = [
            request(&[1], &[5, 6, 7, 8, 20, 21]),
            request(&[1], &[5, 6, 7, 8, 30, 31, 32]),
            request(&[1], &[5, 6, 7, 8, 40, 41]),
        ];
        let tree = PrefixTree::new(&row, 100);
        assert_eq!(tree.tokens, vec![1, 5, 6, 7, 8, 20, 30, 31, 40]);
        assert_eq!(tree.positions, vec![0, 1, 2, 3, 4, 5, 5, 6, 5]);
        assert_eq!(tree.parents, vec![None, Some(0), Some(1), Some(2), Some(3), Some(4), Some(4), Some(6), Some(4)]);
        // The second request's tokens 5..=32 are predicted at its path 0,1,2,3,4,6,7.
        assert_eq!(tree.scored[1], vec![(0, 5), (1, 6), (2, 7), (3, 8), (4, 30), (6, 31), (7, 32)]);
        assert_eq!(tree.scored[2], vec![(0, 5), (1, 6), (2, 7), (3, 8), (4, 40), (8, 41)]);
        assert_eq!(tree.visible(7).collect::<Vec<_>>(), vec![7, 6, 4, 3, 2, 1, 0]);
        assert!(!tree.is_chain());
    }

    #[test]
    fn one_request_is_a_chain_with_its_own_positions() {
        let tree = PrefixTree::new(&[request(&[1, 2], &[3, 4])], 100);
        assert_eq!(tree.tokens, vec![1, 2, 3]);
        assert_eq!(tree.positions, vec![0, 1, 2]);
        assert_eq!(tree.scored, vec![vec![(1, 3), (2, 4)]]);
        assert!(tree.is_chain());
    }

    #[test]
    fn a_repeated_request_adds_no_node() {
        let once = request(&[1, 2], &[3]);
        let tree = PrefixTree::new(&[once.clone(), once], 100);
        assert_eq!(tree.len(), 2);
        assert_eq!(tree.scored, vec![vec![(1, 3)], vec![(1, 3)]]);
    }

    #[test]
    fn truncated_inputs_share_what_remains() {
        // Window 3 keeps [3,4,5] of both inputs before their last tokens.
        let row = [request(&[1, 2, 3, 4], &[5, 6]), request(&[9, 2, 3, 4], &[5, 7])];
        let tree = PrefixTree::new(&row, 3);
        assert_eq!(tree.tokens, vec![3, 4, 5]);
        assert_eq!(tree.scored, vec![vec![(1, 5), (2, 6)], vec![(1, 5), (2, 7)]]);
    }

    #[test]
    fn rows_take_requests_sharing_a_quarter_within_twice_the_longest_length() {
        let inputs: Vec<Vec<u32>> = vec![
            vec![1, 5, 6, 7, 20, 21, 22],     // 0
            vec![1, 9, 9, 9, 9, 9, 9, 9],     // 1: shares only the first token with anything
            vec![1, 5, 6, 7, 30, 31, 32, 33], // 2: shares 4 of 8 with 0
            vec![1, 5, 6, 7, 40, 41],         // 3: shares 4 of 6
            vec![1, 5, 6, 7, 50, 51, 52, 53], // 4: would make the row 17 nodes, past twice the longest input (16)
        ];
        let refs: Vec<&[u32]> = inputs.iter().map(Vec::as_slice).collect();
        let rows = share_prefixes(&refs);
        assert_eq!(
            rows,
            vec![
                Row { members: vec![0, 2, 3], nodes: 13 },
                Row { members: vec![4], nodes: 8 },
                Row { members: vec![1], nodes: 8 },
            ]
        );
    }
}
