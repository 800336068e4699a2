// Third check: run llama.cpp (the fork, built separately; never part of this project's build) on a tiny GGUF.
// Build (outside the repo):  c++ -O2 -std=c++17 llama_check.cpp -I$FORK/include -I$FORK/ggml/include \
//                            -L$FORK/build/bin -lllama -lggml -lggml-base -Wl,-rpath,$FORK/build/bin -o llama_check
// Usage: llama_check MODEL.gguf OUT_PREFIX N_GEN N_PREFILL tok0 tok1 ...
// Writes OUT_PREFIX.logits (f32 [T, V]: whole prompt in one batch, logits at every position),
//        OUT_PREFIX.inc_logits (f32 [T, V]: first N_PREFILL tokens in one batch, then one token per decode),
//        OUT_PREFIX.gen_logits (f32 [N_GEN, V]) and OUT_PREFIX.gen_tokens (text, greedy continuation).
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "llama.h"

namespace {

bool decode(llama_context* ctx, const std::vector<llama_token>& toks, int pos0, bool all_logits) {
    llama_batch b = llama_batch_init(static_cast<int32_t>(toks.size()), 0, 1);
    for (size_t i = 0; i < toks.size(); ++i) {
        b.token[i] = toks[i];
        b.pos[i] = pos0 + static_cast<int>(i);
        b.n_seq_id[i] = 1;
        b.seq_id[i][0] = 0;
        b.logits[i] = all_logits || i + 1 == toks.size();
    }
    b.n_tokens = static_cast<int32_t>(toks.size());
    const int rc = llama_decode(ctx, b);
    llama_batch_free(b);
    if (rc != 0) std::fprintf(stderr, "llama_decode failed: %d\n", rc);
    return rc == 0;
}

void append(std::vector<float>& out, const float* row, int n) { out.insert(out.end(), row, row + n); }

bool write(const std::string& path, const std::vector<float>& v) {
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) return false;
    std::fwrite(v.data(), sizeof(float), v.size(), f);
    std::fclose(f);
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 6) {
        std::fprintf(stderr, "usage: %s MODEL OUT_PREFIX N_GEN N_PREFILL tok...\n", argv[0]);
        return 2;
    }
    const std::string prefix = argv[2];
    const int n_gen = std::atoi(argv[3]);
    const int n_prefill = std::atoi(argv[4]);
    std::vector<llama_token> prompt;
    for (int i = 5; i < argc; ++i) prompt.push_back(std::atoi(argv[i]));
    const int T = static_cast<int>(prompt.size());

    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    llama_model* model = llama_model_load_from_file(argv[1], mp);
    if (!model) return 1;
    const int V = llama_vocab_n_tokens(llama_model_get_vocab(model));

    auto make_ctx = [&]() {
        llama_context_params cp = llama_context_default_params();
        cp.n_ctx = 512;
        cp.n_batch = 512;
        cp.n_ubatch = 512;
        cp.n_threads = 1;
        cp.n_threads_batch = 1;
        // F32 KV cache and no flash attention: compare the model, not the default F16 cache rounding.
        cp.type_k = GGML_TYPE_F32;
        cp.type_v = GGML_TYPE_F32;
        cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
        return llama_init_from_model(model, cp);
    };

    // 1) Whole prompt in one batch, logits at every position; then greedy decode.
    llama_context* ctx = make_ctx();
    if (!decode(ctx, prompt, 0, true)) return 1;
    std::vector<float> logits;
    for (int i = 0; i < T; ++i) append(logits, llama_get_logits_ith(ctx, i), V);
    std::vector<float> gen_logits;
    std::vector<llama_token> gen;
    const float* last = llama_get_logits_ith(ctx, T - 1);
    for (int s = 0; s < n_gen; ++s) {
        append(gen_logits, last, V);
        int best = 0;
        for (int v = 1; v < V; ++v) if (last[v] > last[best]) best = v;
        gen.push_back(best);
        if (s + 1 == n_gen) break;
        if (!decode(ctx, {best}, T + s, true)) return 1;
        last = llama_get_logits_ith(ctx, 0);
    }
    llama_free(ctx);

    // 2) Incremental: prefill n_prefill tokens, then one token per decode (recurrent-step path).
    ctx = make_ctx();
    std::vector<float> inc;
    std::vector<llama_token> head(prompt.begin(), prompt.begin() + n_prefill);
    if (!decode(ctx, head, 0, true)) return 1;
    for (int i = 0; i < n_prefill; ++i) append(inc, llama_get_logits_ith(ctx, i), V);
    for (int t = n_prefill; t < T; ++t) {
        if (!decode(ctx, {prompt[t]}, t, true)) return 1;
        append(inc, llama_get_logits_ith(ctx, 0), V);
    }
    llama_free(ctx);

    write(prefix + ".logits", logits);
    write(prefix + ".inc_logits", inc);
    write(prefix + ".gen_logits", gen_logits);
    FILE* f = std::fopen((prefix + ".gen_tokens").c_str(), "w");
    for (auto t : gen) std::fprintf(f, "%d\n", t);
    std::fclose(f);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
