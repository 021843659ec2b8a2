// The KV cache's host-side logic on its own, without a model: block pool, prefix cache, eviction
// order, copy-on-write, and a randomised run that checks the pool's invariants after every step.
#include <gtest/gtest.h>

#include <numeric>
#include <random>

#include "core/error.h"
#include "kv/kv_cache.h"

namespace tern::kv {
namespace {

std::vector<int32_t> iota_tokens(int n, int start = 0) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), start);
  return t;
}

TEST(BlockPool, AllocatesEveryBlockOnceThenRefuses) {
  BlockPool pool(5);
  std::vector<int32_t> got;
  for (int i = 0; i < 5; ++i) got.push_back(pool.allocate());
  EXPECT_EQ(pool.allocate(), -1);
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, iota_tokens(5));
  EXPECT_EQ(pool.n_free(), 0);
  pool.check_invariants();
}

TEST(BlockPool, ReusesBlocksInReleaseOrder) {
  BlockPool pool(4);
  for (int i = 0; i < 4; ++i) pool.allocate();
  pool.release(2);
  pool.release(0);
  pool.release(3);
  EXPECT_EQ(pool.allocate(), 2);
  EXPECT_EQ(pool.allocate(), 0);
  EXPECT_EQ(pool.allocate(), 3);
  pool.check_invariants();
}

TEST(BlockPool, ReferenceCountsAndMisuse) {
  BlockPool pool(2);
  const int32_t b = pool.allocate();
  pool.retain(b);
  EXPECT_EQ(pool.ref_count(b), 2);
  pool.release(b);
  EXPECT_EQ(pool.n_free(), 1);
  pool.release(b);
  EXPECT_EQ(pool.n_free(), 2);
  EXPECT_THROW(pool.release(b), Error);
  EXPECT_THROW(pool.retain(b), Error);
  EXPECT_THROW(pool.ref_count(7), Error);
  pool.check_invariants();
}

TEST(BlockPool, CachedFreeBlockIsFoundUntilEvicted) {
  BlockPool pool(2);
  const BlockHash h = hash_block({}, iota_tokens(4));
  const int32_t a = pool.allocate();
  pool.publish(a, h);
  pool.release(a);
  EXPECT_EQ(pool.n_cached(), 1);
  EXPECT_EQ(pool.find(h), a);  // a free cached block comes back with a reference
  EXPECT_EQ(pool.n_free(), 1);
  pool.release(a);
  const int32_t other = pool.allocate();  // the never-used block was released before a
  EXPECT_NE(other, a);
  EXPECT_EQ(pool.allocate(), a);  // now a is evicted
  EXPECT_EQ(pool.n_cached(), 0);
  EXPECT_EQ(pool.find(h), -1);
  pool.check_invariants();
}

TEST(BlockHash, ChainCoversThePrefix) {
  const auto t = iota_tokens(8);
  const BlockHash first = hash_block({}, t);
  EXPECT_EQ(first, hash_block({}, t));
  EXPECT_NE(hash_block(first, t), first);  // same tokens after a prefix: another key
  auto u = t;
  u[7] = 99;
  EXPECT_NE(hash_block({}, u), first);
}

TEST(KvCache, SharesFullBlocksOfACommonPrefix) {
  KvCache kv(10, 16);
  std::vector<BlockCopy> copies;
  const auto a_tok = iota_tokens(40);
  SeqBlocks a;
  EXPECT_EQ(kv.match_prefix(a, a_tok), 0);
  ASSERT_TRUE(kv.grow(a, 40, copies));
  EXPECT_EQ(a.blocks.size(), 3u);
  kv.publish(a, a_tok, 40);
  EXPECT_EQ(a.n_published, 2);
  EXPECT_EQ(kv.pool().n_cached(), 2);

  auto b_tok = iota_tokens(35);
  b_tok[34] = 1000;
  SeqBlocks b;
  EXPECT_EQ(kv.match_prefix(b, b_tok), 32);
  EXPECT_EQ(b.blocks, std::vector<int32_t>(a.blocks.begin(), a.blocks.begin() + 2));
  EXPECT_EQ(kv.pool().ref_count(a.blocks[0]), 2);
  ASSERT_TRUE(kv.grow(b, 35, copies));
  EXPECT_TRUE(copies.empty());  // appending after a full shared block copies nothing

  // A prompt that is exactly the cached blocks still leaves its last token to compute.
  SeqBlocks c;
  EXPECT_EQ(kv.match_prefix(c, std::span(a_tok).first(32)), 16);
  kv.free(a);
  kv.free(b);
  kv.free(c);
  EXPECT_EQ(kv.pool().n_free(), 10);
  EXPECT_EQ(kv.pool().n_cached(), 2);  // still findable
  kv.check_invariants();
}

TEST(KvCache, DifferentPrefixSameBlockDoesNotMatch) {
  KvCache kv(8, 4);
  std::vector<BlockCopy> copies;
  const std::vector<int32_t> x = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  SeqBlocks a;
  kv.grow(a, 9, copies);
  kv.publish(a, x, 9);
  const std::vector<int32_t> y = {0, 0, 0, 0, 5, 6, 7, 8, 9};  // second block equal, first not
  SeqBlocks b;
  EXPECT_EQ(kv.match_prefix(b, y), 0);
}

TEST(KvCache, FreeingEvictsTheTailFirst) {
  KvCache kv(3, 2);
  std::vector<BlockCopy> copies;
  const auto t = iota_tokens(7);
  SeqBlocks a;
  kv.grow(a, 6, copies);
  kv.publish(a, t, 6);
  const auto blocks = a.blocks;
  kv.free(a);
  // One new block evicts the prompt's last block; the first two still match.
  SeqBlocks other;
  kv.grow(other, 1, copies);
  EXPECT_EQ(other.blocks[0], blocks[2]);
  SeqBlocks again;
  EXPECT_EQ(kv.match_prefix(again, t), 4);
  kv.check_invariants();
}

TEST(KvCache, CopyOnWriteOfASharedPartialBlock) {
  KvCache kv(6, 4);
  std::vector<BlockCopy> copies;
  SeqBlocks parent, child;
  ASSERT_TRUE(kv.grow(parent, 6, copies));
  kv.fork(parent, child);
  EXPECT_EQ(kv.pool().ref_count(parent.blocks[1]), 2);
  EXPECT_EQ(kv.blocks_needed(child, 7), 1);
  ASSERT_TRUE(kv.grow(child, 7, copies));
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_EQ(copies[0].src, parent.blocks[1]);
  EXPECT_EQ(copies[0].dst, child.blocks[1]);
  EXPECT_EQ(copies[0].n_slots, 2);
  EXPECT_NE(child.blocks[1], parent.blocks[1]);
  EXPECT_EQ(child.blocks[0], parent.blocks[0]);
  EXPECT_EQ(kv.pool().ref_count(parent.blocks[1]), 1);
  // The parent, now sole owner, appends in place.
  copies.clear();
  ASSERT_TRUE(kv.grow(parent, 8, copies));
  EXPECT_TRUE(copies.empty());
  kv.free(parent);
  kv.free(child);
  EXPECT_EQ(kv.pool().n_free(), 6);
  kv.check_invariants();
}

TEST(KvCache, GrowFailsWithoutChangingAnything) {
  KvCache kv(2, 4);
  std::vector<BlockCopy> copies;
  SeqBlocks s;
  ASSERT_TRUE(kv.grow(s, 5, copies));
  EXPECT_FALSE(kv.grow(s, 9, copies));
  EXPECT_EQ(s.n_slots, 5);
  EXPECT_EQ(s.blocks.size(), 2u);
  EXPECT_EQ(kv.pool().n_free(), 0);
}

// Many sequences appending, forking, sharing prefixes and finishing at random: the pool stays
// consistent after every operation and holds no block once every sequence is gone.
TEST(KvCache, RandomisedOperationsKeepThePoolConsistent) {
  std::mt19937 rng(7);
  KvCache kv(64, 4);
  struct Seq {
    SeqBlocks blocks;
    std::vector<int32_t> tokens;
  };
  std::vector<Seq> seqs;
  std::vector<BlockCopy> copies;
  int64_t hits = 0;
  for (int step = 0; step < 5000; ++step) {
    const int op = static_cast<int>(rng() % 10);
    if (op < 3 || seqs.empty()) {
      Seq s;
      const int n = 1 + static_cast<int>(rng() % 20);
      for (int i = 0; i < n; ++i) s.tokens.push_back(static_cast<int32_t>(rng() % 3));  // small alphabet: many shared prefixes
      const int32_t hit = kv.match_prefix(s.blocks, s.tokens);
      hits += hit;
      ASSERT_LT(hit, n);
      ASSERT_EQ(hit % 4, 0);
      if (kv.grow(s.blocks, n, copies)) {
        kv.publish(s.blocks, s.tokens, n);
        seqs.push_back(std::move(s));
      } else {
        kv.free(s.blocks);
      }
    } else if (op < 7) {
      Seq& s = seqs[rng() % seqs.size()];
      const auto n = static_cast<int32_t>(s.tokens.size()) + 1;
      if (kv.grow(s.blocks, n, copies)) {
        s.tokens.push_back(static_cast<int32_t>(rng() % 3));
        kv.publish(s.blocks, s.tokens, n);
      }
    } else if (op < 8) {
      Seq child;
      const Seq& parent = seqs[rng() % seqs.size()];
      kv.fork(parent.blocks, child.blocks);
      child.tokens = parent.tokens;
      seqs.push_back(std::move(child));
    } else {
      const size_t i = rng() % seqs.size();
      kv.free(seqs[i].blocks);
      seqs.erase(seqs.begin() + static_cast<std::ptrdiff_t>(i));
    }
    ASSERT_NO_THROW(kv.check_invariants()) << "step " << step;
    for (const auto& c : copies) ASSERT_GT(c.n_slots, 0);
    copies.clear();
  }
  for (auto& s : seqs) kv.free(s.blocks);
  EXPECT_EQ(kv.pool().n_free(), 64);
  EXPECT_GT(hits, 0);
  EXPECT_GT(kv.stats().cow_copies, 0);
  kv.check_invariants();
}

}  // namespace
}  // namespace tern::kv
