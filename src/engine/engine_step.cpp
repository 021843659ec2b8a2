// Requests and the step loop: submit() queues, step() admits, schedules one ragged batch of prefill
// chunks and decodes (continuous batching), runs it, samples, and streams each request's tokens.
#include <algorithm>
#include <chrono>

#include "core/error.h"
#include "engine/engine_impl.h"
#include "engine/logprobs.h"

namespace tern {

RequestId Engine::submit(GenerateRequest req, EventSink sink) {
  Impl& m = *impl_;
  m.check_prompt(req.prompt);
  TERN_CHECK(req.max_tokens >= 0, "max_tokens must be >= 0, got {}", req.max_tokens);
  TERN_CHECK(req.top_logprobs >= -1 && req.top_logprobs <= 20, "top_logprobs must be in 0..20, got {}",
             req.top_logprobs);
  validate(req.sampling);
  std::lock_guard lock(m.inbox_mutex);
  const RequestId id = m.next_id++;
  auto r = std::make_unique<Request>(id, std::move(req), std::move(sink), m.tokenizer,
                                     spec::DraftLength(m.spec_k_max, m.spec_cost, m.config.speculative.adaptive));
  r->seq.id = id;
  r->seq.priority = r->params.priority;
  r->seq.arrival = m.next_arrival++;
  r->seq.tokens = r->params.prompt;
  r->seq.n_prompt = r->seq.n_tokens();
  m.inbox.push_back(std::move(r));
  m.inbox_cv.notify_all();
  return id;
}

void Engine::cancel(RequestId id) {
  Impl& m = *impl_;
  std::lock_guard lock(m.inbox_mutex);
  m.cancelled.push_back(id);
  m.inbox_cv.notify_all();
}

void Engine::wait_for_work(double seconds) {
  Impl& m = *impl_;
  std::unique_lock lock(m.inbox_mutex);
  m.inbox_cv.wait_for(lock, std::chrono::duration<double>(seconds),
                      [&] { return !m.inbox.empty() || !m.cancelled.empty(); });
}

void Engine::abort_all() {
  Impl& m = *impl_;
  m.admit_inbox();
  std::vector<RequestId> ids;
  for (const auto& [id, r] : m.active) ids.push_back(id);
  for (RequestId id : ids) m.finish(*m.active.at(id), FinishReason::Cancelled, true);
  m.publish_metrics();
}

EngineMetrics Engine::metrics() const {
  std::lock_guard lock(impl_->inbox_mutex);
  return impl_->metrics;
}

// Moves queued requests to the scheduler and applies cancellations.
void Engine::Impl::admit_inbox() {
  std::deque<std::unique_ptr<Request>> fresh;
  std::vector<RequestId> gone;
  {
    std::lock_guard lock(inbox_mutex);
    fresh.swap(inbox);
    gone.swap(cancelled);
  }
  for (auto& r : fresh) {
    Request* p = r.get();
    active.emplace(p->id, std::move(r));
    if (p->params.max_tokens == 0) {
      finish(*p, FinishReason::Length, true);
      continue;
    }
    scheduler->add(&p->seq);
  }
  for (RequestId id : gone)
    if (const auto it = active.find(id); it != active.end()) finish(*it->second, FinishReason::Cancelled, true);
}

// Ends a request: its blocks go back to the pool, and its sink hears the end (with any text held back).
void Engine::Impl::finish(Request& r, FinishReason why, bool notify) {
  scheduler->remove(&r.seq);
  if (proposer) proposer->release(r.seq.id);
  if (notify && r.sink) {
    std::string tail;
    if (why != FinishReason::Stop && why != FinishReason::Cancelled) tail = r.stops.push(r.detok.flush()) + r.stops.flush();
    RequestEvent e{.id = r.id,
                   .text = tail,
                   .finished = true,
                   .finish = why,
                   .prompt_tokens = r.seq.n_prompt,
                   .cached_prompt_tokens = r.seq.n_cached_prompt,
                   .generated_tokens = r.n_emitted};
    r.sink(e);
  }
  ++requests_finished;
  active.erase(r.id);  // destroys r
}

// A token was sampled for `r` (already appended to its sequence): stream it and decide whether the
// request is done. `row` is its logits row, for log-probabilities. Returns false when the request
// ended (and `r` is gone).
bool Engine::Impl::deliver(Request& r, int32_t token, const float* row) {
  const GenerateRequest& p = r.params;
  auto end = [&](FinishReason why) {
    finish(r, why, true);
    return false;
  };
  if (!p.ignore_eos && tokenizer.is_eog(token)) return end(FinishReason::Eos);
  ++generated_tokens;
  ++r.n_emitted;
  RequestEvent e{.id = r.id, .has_token = true, .token = token};
  if (p.top_logprobs >= 0) {
    e.logprob = token_logprobs(std::span<const float>(row, static_cast<size_t>(summary.n_vocab)), token,
                               p.top_logprobs, r.top);
    e.top = r.top;
  }
  const std::string text = r.stops.push(r.detok.feed(token));
  e.text = text;
  e.prompt_tokens = r.seq.n_prompt;
  e.cached_prompt_tokens = r.seq.n_cached_prompt;
  e.generated_tokens = r.n_emitted;
  if (r.sink && !r.sink(e)) return end(FinishReason::Cancelled);
  if (r.stops.stopped()) return end(FinishReason::Stop);
  // Counted by delivered tokens: a speculative step appends several to the sequence at once.
  if (r.n_emitted >= p.max_tokens) return end(FinishReason::Length);
  // The new token needs a KV slot at position n_prompt + n_emitted - 1 for the next step.
  if (r.seq.n_prompt + r.n_emitted > summary.n_ctx) return end(FinishReason::Context);
  return true;
}

void Engine::Impl::publish_metrics() {
  EngineMetrics x;
  x.running = static_cast<int64_t>(scheduler->n_running());
  x.waiting = static_cast<int64_t>(scheduler->n_waiting());
  x.kv_blocks_total = kv->pool().n_blocks();
  x.kv_blocks_used = kv->pool().n_used();
  x.kv_blocks_cached = kv->pool().n_cached();
  x.kv_block_size = kv->block_size();
  // Tokens held: each referenced block counted once (a shared prefix block is stored once), filled
  // as far as its fullest owner has written it.
  // Work is proportional to the blocks held, not to the pool: `kv_fill` is all zero between calls.
  kv_fill.resize(static_cast<size_t>(kv->pool().n_blocks()), 0);
  const int32_t bs = kv->block_size();
  for (const auto& [id, r] : active) {
    const kv::SeqBlocks& sb = r->seq.kv;
    x.kv_tokens_logical += sb.n_slots;
    for (size_t i = 0; i < sb.blocks.size(); ++i) {
      const int32_t n = std::min(bs, sb.n_slots - static_cast<int32_t>(i) * bs);
      int32_t& f = kv_fill[static_cast<size_t>(sb.blocks[i])];
      if (n > f) x.kv_tokens_held += n - f, f = n;
    }
  }
  for (const auto& [id, r] : active)
    for (int32_t b : r->seq.kv.blocks) kv_fill[static_cast<size_t>(b)] = 0;
  const auto& st = scheduler->stats();
  x.prefix_query_tokens = st.prefix_query_tokens;
  x.prefix_hit_tokens = st.prefix_hit_tokens;
  x.preemptions = st.preemptions;
  x.steps = st.steps;
  x.prompt_tokens = prompt_tokens_computed;
  x.generated_tokens = generated_tokens;
  x.requests_finished = requests_finished;
  x.spec_verify_passes = spec_verify_passes;
  x.spec_draft_tokens = spec_draft_tokens;
  x.spec_accepted_tokens = spec_accepted_tokens;
  x.spec_emitted_tokens = spec_emitted_tokens;
  x.tokens_from_top_logits = tokens_from_top_logits;
  std::lock_guard lock(inbox_mutex);
  x.waiting += static_cast<int64_t>(inbox.size());
  metrics = x;
}

std::span<float> Engine::Impl::sampling_row(const Request& r, float* row) {
  const size_t V = static_cast<size_t>(summary.n_vocab);
  if (r.params.top_logprobs < 0) return {row, V};
  // Log-probabilities come from the unmodified logits: sample from a copy (penalties edit in place).
  row_copy.assign(row, row + V);
  return row_copy;
}

int32_t Engine::Impl::sample_row(Request& r, float* row, std::span<const int32_t> hist) {
  return r.sampler.sample(sampling_row(r, row), hist);
}

int32_t Engine::Impl::top_logits_wanted(const StepPlan& plan) const {
  if (!config.sample_from_top_logits) return 0;
  int32_t k = 0;
  for (size_t i = 0; i < plan.chunks.size(); ++i) {
    const ScheduledChunk& c = plan.chunks[i];
    if (!c.sample) continue;
    const Request& req = *chunk_requests[i];
    const int want =
        c.n_draft > 0 || req.params.top_logprobs >= 0 ? 0 : req.sampler.wants_top_k(kMaxTopLogits, summary.n_vocab);
    if (want == 0) return 0;  // one row needs all its logits: the pass brings back whole rows
    k = std::max(k, static_cast<int32_t>(want));
  }
  return k;
}

std::span<const TokenProb> Engine::Impl::target_distribution(Request& r, float* row, std::span<const int32_t> hist) {
  return r.sampler.distribution(sampling_row(r, row), hist);
}

void Engine::Impl::verify_drafts(Request& r, float* rows) {
  const size_t V = static_cast<size_t>(summary.n_vocab);
  const spec::Draft& d = r.draft;
  // The penalty window, when a penalty is on: the sequence's tail, then the drafts kept so far.
  const bool penalised = r.sampler.uses_history();
  history.clear();
  if (penalised) {
    const size_t window = static_cast<size_t>(r.params.sampling.penalty_last_n);
    const std::vector<int32_t>& toks = r.seq.tokens;
    history.assign(toks.end() - static_cast<std::ptrdiff_t>(std::min(toks.size(), window)), toks.end());
  }
  int32_t accepted = 0;
  for (size_t j = 0;; ++j) {
    float* row = rows + V * j;
    const std::span<const TokenProb> p = target_distribution(r, row, history);
    out_rows.push_back(row);
    if (j == d.tokens.size()) {  // every draft kept: one more token from the last row
      out.tokens.push_back(r.sampler.draw(p));
      break;
    }
    const int32_t x = d.tokens[j];
    const std::span<const TokenProb> q = d.q_of(j);
    if (!verifier->accept(p, q, x, r.sampler)) {
      out.tokens.push_back(verifier->resample(p, q, x, r.sampler));
      break;
    }
    out.tokens.push_back(x);
    if (penalised) history.push_back(x);
    ++accepted;
  }
  const auto drafted = static_cast<int32_t>(d.tokens.size());
  r.draft_length.observe(drafted, accepted);
  ++spec_verify_passes;
  spec_draft_tokens += drafted;
  spec_accepted_tokens += accepted;
  spec_emitted_tokens += accepted + 1;
}

bool Engine::step() {
  Impl& m = *impl_;
  m.admit_inbox();
  // Speculative decoding: how many tokens each decoding sequence may draft this step.
  if (m.proposer) {
    const bool speculate = m.spec_max_batch < 0 || m.scheduler->n_running() <= static_cast<size_t>(m.spec_max_batch);
    for (auto& [id, r] : m.active) {
      Sequence& s = r->seq;
      s.spec_k = 0;
      if (!speculate || s.state != SeqState::Running || s.n_tokens() - s.n_computed != 1) continue;
      // Never past max_tokens (the sampled token after the drafts counts too) or the context.
      const int32_t room = std::min(r->params.max_tokens - s.n_generated() - 1, m.summary.n_ctx - s.n_tokens());
      s.spec_k = std::clamp(r->draft_length.next(), 0, std::max(room, 0));
    }
  }
  const StepPlan& plan = m.scheduler->schedule();
  if (plan.empty()) {
    m.publish_metrics();
    return false;
  }
  for (const kv::BlockCopy& c : plan.copies) m.kv_storage->copy_block(c.src, c.dst, c.n_slots);

  // Each chunk's request, looked up once per step; drafts for the decodes that have slots for them.
  m.chunk_requests.clear();
  m.draft_requests.clear();
  for (const ScheduledChunk& c : plan.chunks) {
    Request& req = *m.active.at(c.seq->id);
    m.chunk_requests.push_back(&req);
    if (c.n_draft == 0) continue;
    req.draft.clear();
    const Sequence& s = *c.seq;
    m.draft_requests.push_back({.seq_id = s.id,
                                .tokens = s.tokens,
                                .target_kv = {s.kv.blocks.data(), static_cast<int32_t>(s.kv.blocks.size())},
                                .max_tokens = c.n_draft,
                                .sampling = &req.params.sampling,
                                .out = &req.draft});
  }
  if (!m.draft_requests.empty()) m.proposer->propose(m.draft_requests);

  // One ragged batch: each scheduled chunk's tokens at their positions, with its block table; a
  // speculative decode's token is followed by its drafts, and every one of them needs logits.
  Batch& b = m.batch;
  b.clear();
  for (size_t i = 0; i < plan.chunks.size(); ++i) {
    const ScheduledChunk& c = plan.chunks[i];
    const Sequence& s = *c.seq;
    const KvSeq table{s.kv.blocks.data(), static_cast<int32_t>(s.kv.blocks.size())};
    if (c.n_draft > 0) {
      const spec::Draft& d = m.chunk_requests[i]->draft;
      TERN_CHECK(d.tokens.size() <= static_cast<size_t>(c.n_draft), "proposer {} drafted {} tokens for {} slots",
                 m.proposer->name(), d.tokens.size(), c.n_draft);
      m.chunk_tokens.assign(1, s.tokens.back());
      m.chunk_tokens.insert(m.chunk_tokens.end(), d.tokens.begin(), d.tokens.end());
      b.add(table, m.chunk_tokens, s.n_computed);
      for (size_t j = 0; j < m.chunk_tokens.size(); ++j)
        b.logit_rows.push_back(static_cast<int32_t>(b.tokens.size() - m.chunk_tokens.size() + j));
      continue;
    }
    const int32_t n = c.n_tokens;
    b.add(table, std::span(s.tokens).subspan(static_cast<size_t>(s.n_computed), static_cast<size_t>(n)), s.n_computed);
    if (c.sample) b.logit_rows.push_back(static_cast<int32_t>(b.tokens.size()) - 1);
    if (s.n_computed < s.n_prompt) m.prompt_tokens_computed += std::min(n, s.n_prompt - s.n_computed);
  }
  const size_t V = static_cast<size_t>(m.summary.n_vocab);
  b.logit_top_k = m.top_logits_wanted(plan);
  m.forward(b);
  const auto top = static_cast<size_t>(b.logit_top_k);

  // Each sequence that reached its end samples from its own logits row; a speculative one keeps
  // the drafts the verifier accepts, then samples one more.
  m.out.clear();
  m.out_rows.clear();
  size_t r = 0;
  for (size_t i = 0; i < plan.chunks.size(); ++i) {
    const ScheduledChunk& c = plan.chunks[i];
    if (c.sample) {
      Request& req = *m.chunk_requests[i];
      float* rows = m.logits.data() + V * r;
      if (top > 0) {  // this row's best logits (top_logits_wanted: no drafts, no log-probabilities)
        const std::span<const float> values(m.logits.data() + top * r, top);
        const std::span<const int32_t> ids(m.top_ids.data() + top * r, top);
        m.out.tokens.push_back(req.sampler.draw(req.sampler.distribution_top(values, ids)));
        m.out_rows.push_back(nullptr);
        ++r;
        ++m.tokens_from_top_logits;
      } else if (c.n_draft > 0) {
        m.verify_drafts(req, rows);
        r += 1 + req.draft.tokens.size();
      } else {
        m.out.tokens.push_back(m.sample_row(req, rows, c.seq->tokens));
        m.out_rows.push_back(rows);
        ++r;
      }
    }
    m.out.end_chunk();
  }
  m.scheduler->update(plan, m.out);
  for (size_t i = 0; i < plan.chunks.size(); ++i) {
    const size_t first = static_cast<size_t>(m.out.offsets[i]);
    const std::span<const int32_t> produced = m.out.chunk(i);
    // A request that ends (EOS, stop, length) drops the rest of this step's tokens.
    for (size_t j = 0; j < produced.size() && m.deliver(*m.chunk_requests[i], produced[j], m.out_rows[first + j]); ++j) {
    }
  }
  m.publish_metrics();
  return true;
}

GenerateResult Engine::generate(const GenerateRequest& request, const std::function<bool(const StreamChunk&)>& on_chunk) {
  using clock = std::chrono::steady_clock;
  GenerateResult res;
  bool done = false;
  const auto t0 = clock::now();
  auto t1 = t0;
  bool first = true;
  submit(request, [&](const RequestEvent& e) {
    if (first && (e.has_token || e.finished)) {
      t1 = clock::now();  // the prompt's forward pass ends where the first token (or the end) arrives
      first = false;
    }
    if (e.has_token) res.tokens.push_back(e.token);
    res.text += e.text;
    bool keep = true;
    if (on_chunk && (e.has_token || !e.text.empty()))
      keep = on_chunk(StreamChunk{e.has_token ? e.token : (res.tokens.empty() ? -1 : res.tokens.back()), e.text});
    if (e.finished) {
      res.finish = e.finish;
      done = true;
    }
    return keep;
  });
  while (!done) {
    if (!step()) wait_for_work(0.01);
  }
  res.prompt_seconds = std::chrono::duration<double>(t1 - t0).count();
  res.generate_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return res;
}

}  // namespace tern
