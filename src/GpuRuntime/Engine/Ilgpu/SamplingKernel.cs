using System.Runtime.CompilerServices;
using ILGPU;
using Weft.GpuRuntime.Sampling;
using Weft.GpuRuntime.Sampling.Grammar;
using Weft.Scheduling;

namespace Weft.GpuRuntime.Engine.Ilgpu;

/// <summary>
/// Sampling on the device, one group per logits row, with the CPU <see cref="Sampling.Sampler"/>'s semantics. The
/// sampler sorts candidates by (logit descending, id ascending); here that order is the unsigned order of a 64-bit key
/// (descending-logit key, id), and every prefix of it that top-k, top-p and the draw need is found by bisection over
/// the key: a prefix is "keys ≤ T", so counting or summing below a threshold replaces the sort.
/// </summary>
static class SamplingKernel
{
    /// <summary>Per-row parameters, as ints: flags, top-k, then float bits, the seed's halves, the completion index,
    /// the row's penalty entries, the number of top log-probabilities plus one (0: none), the row's bias entries and
    /// its mask's slot.</summary>
    public const int ParamInts = 17;
    public const int FlagGreedy = 1, FlagOnHost = 2, FlagProcessed = 4, FlagMasked = 8;
    public const int PFlags = 0, PTopK = 1, PTemperature = 2, PTopP = 3, PMinP = 4, PRepetition = 5, PPresence = 6,
        PFrequency = 7, PSeedLo = 8, PSeedHi = 9, PCompletionIndex = 10, PPenaltyOffset = 11, PPenaltyCount = 12,
        PLogprobs = 13, PBiasOffset = 14, PBiasCount = 15, PMaskSlot = 16;
    /// <summary>Floats per row of the log-probabilities: the sampled token's, then the top ones'.</summary>
    public const int LogprobStride = 1 + SamplingParams.MaxLogprobs;

    /// <summary>32-bit words of one row's mask: whole 64-bit words, the layout <see cref="IBitmaskConstraint"/>
    /// writes (token t is bit t % 32 of word t / 32).</summary>
    public static int MaskWords(int vocab) => 2 * ((vocab + 63) / 64);

    const int MaxWarps = 32;

    /// <param name="probs">Scratch [rows, vocab]: each token's probability once computed, or -1 outside the kept
    /// set.</param>
    /// <param name="entries">Pairs per row: (token, bias bits) for its logit bias, (token, generated count) for each
    /// distinct token of a penalised history. The second of each pair is overwritten with the token's logit before
    /// the change, the raw logit a raw log-probability of the sampled token needs.</param>
    /// <param name="masks">[slots, <see cref="MaskWords"/>] the allowed tokens of the constrained rows.</param>
    /// <param name="logprobs">[rows, <see cref="LogprobStride"/>] the log-probability of the sampled token, then of
    /// the top tokens, whose ids go to <paramref name="logprobIds"/> [rows, 20]: the log-softmax of the raw logits,
    /// or with <see cref="FlagProcessed"/> of the distribution drawn from, as <see cref="Sampler"/> reports
    /// them.</param>
    public static void Sample(ArrayView<float> logits, ArrayView<float> probs, ArrayView<int> parameters,
        ArrayView<int> entries, ArrayView<int> masks, ArrayView<int> tokens, ArrayView<float> logprobs,
        ArrayView<int> logprobIds, int vocab)
    {
        var dScratch = SharedMemory.Allocate<double>(MaxWarps);
        var uScratch = SharedMemory.Allocate<ulong>(MaxWarps);
        int row = Grid.IdxX;
        var pr = parameters.SubView((long)row * ParamInts, ParamInts);
        int flags = pr[PFlags];
        if ((flags & FlagOnHost) != 0) return;
        var l = logits.SubView((long)row * vocab, vocab);
        var p = probs.SubView((long)row * vocab, vocab);
        var lp = logprobs.SubView((long)row * LogprobStride, LogprobStride);
        int wanted = pr[PLogprobs] - 1;
        bool processed = (flags & FlagProcessed) != 0;
        var ids = logprobIds.SubView((long)row * SamplingParams.MaxLogprobs, SamplingParams.MaxLogprobs);
        float lse = 0f;
        if (wanted >= 0 && !processed)
        {
            lse = TopLogprobs(l, vocab, wanted, lp, ids, dScratch, uScratch);
            // the first thread reads the last top logit after the others have left: before any of them changes it
            DeviceMath.Sync();
        }

        // the sampler's order: bias, mask, penalties, each a pass of its own (a token may be in all three)
        int biases = pr[PBiasCount];
        long bias0 = pr[PBiasOffset];
        for (int e = Group.IdxX; e < biases; e += Group.DimX)
        {
            long at = 2 * (bias0 + e);
            int token = entries[at];
            float b = Interop.IntAsFloat((uint)entries[at + 1]), v = l[token];
            entries[at + 1] = (int)Interop.FloatAsInt(v);
            // -100 bans the token outright, as the sampler's ApplyBias
            l[token] = b <= -100 ? float.NegativeInfinity : v + b;
        }
        if (biases > 0) DeviceMath.Sync();
        if ((flags & FlagMasked) != 0)
        {
            var mask = masks.SubView((long)pr[PMaskSlot] * MaskWords(vocab), MaskWords(vocab));
            for (int i = Group.IdxX; i < vocab; i += Group.DimX)
                if ((mask[i >> 5] & (1 << (i & 31))) == 0) l[i] = float.NegativeInfinity;
            DeviceMath.Sync();
        }

        float rep = Interop.IntAsFloat((uint)pr[PRepetition]), presence = Interop.IntAsFloat((uint)pr[PPresence]),
            frequency = Interop.IntAsFloat((uint)pr[PFrequency]);
        int penalties = pr[PPenaltyCount];
        long penalty0 = pr[PPenaltyOffset];
        for (int e = Group.IdxX; e < penalties; e += Group.DimX)
        {
            long at = 2 * (penalty0 + e);
            int token = entries[at], count = entries[at + 1];
            float v = l[token];
            entries[at + 1] = (int)Interop.FloatAsInt(v);
            if (rep != 1f) v = v > 0 ? v / rep : v * rep;
            if (count > 0 && (presence != 0 || frequency != 0)) v -= frequency * count + presence;
            l[token] = v;
        }
        DeviceMath.Sync();
        // processed: the top ids in the penalised logits' key order, which top-k, min-p and top-p keep a prefix of
        if (wanted >= 0 && processed) lse = TopLogprobs(l, vocab, wanted, lp, ids, dScratch, uScratch);

        ulong best = ulong.MaxValue;
        for (int i = Group.IdxX; i < vocab; i += Group.DimX)
        {
            ulong key = Key(l[i], i);
            best = key < best ? key : best;
        }
        best = GroupMin(best, uScratch);
        if ((flags & FlagGreedy) != 0)
        {
            Chosen(l, tokens, lp, entries, pr, row, (int)(best & 0xFFFFFFFFu), wanted >= 0, processed, lse, uScratch);
            return;
        }

        // top-k: candidates are the keys up to the k-th smallest
        int topK = pr[PTopK];
        ulong kLast = ulong.MaxValue;
        if (topK > 0 && topK < vocab)
        {
            ulong lo = 0, hi = ulong.MaxValue;
            while (lo < hi)
            {
                ulong mid = lo + (hi - lo) / 2;
                double n = 0;
                for (int i = Group.IdxX; i < vocab; i += Group.DimX)
                    if (Key(l[i], i) <= mid) n += 1;
                if (GroupSum(n, dScratch) >= topK) hi = mid; else lo = mid + 1;
            }
            kLast = lo;
        }

        // softmax over the candidates at the temperature; exp in f32 and the sum in double, as the sampler
        float max = l[(int)(best & 0xFFFFFFFFu)], inv = 1f / Interop.IntAsFloat((uint)pr[PTemperature]);
        double sum = 0;
        for (int i = Group.IdxX; i < vocab; i += Group.DimX)
            if (Key(l[i], i) <= kLast) sum += MathF.Exp((l[i] - max) * inv);
        float norm = (float)(1.0 / GroupSum(sum, dScratch));
        // min-p keeps probabilities ≥ p(top) · min_p, which is a prefix of the order
        float minP = Interop.IntAsFloat((uint)pr[PMinP]);
        float cutoff = minP > 0 ? norm * minP : 0f;
        for (int i = Group.IdxX; i < vocab; i += Group.DimX)
        {
            float pi = -1f;
            if (Key(l[i], i) <= kLast)
            {
                pi = MathF.Exp((l[i] - max) * inv) * norm;
                if (minP > 0 && pi < cutoff && Key(l[i], i) != best) pi = -1f;
            }
            p[i] = pi;
        }
        DeviceMath.Sync();

        // top-p keeps a token while the mass before it is below top_p times what min-p kept: keys below the least T
        // with mass(keys < T) ≥ that target
        float topP = Interop.IntAsFloat((uint)pr[PTopP]);
        ulong keptEnd = ulong.MaxValue; // kept: key < keptEnd (and p ≥ 0)
        if (topP < 1f)
        {
            double kept = MassBelow(l, p, vocab, ulong.MaxValue, dScratch);
            double target = topP * (minP > 0 ? kept : 1.0);
            if (kept >= target)
            {
                ulong lo = 0, hi = ulong.MaxValue;
                while (lo < hi)
                {
                    ulong mid = lo + (hi - lo) / 2;
                    if (MassBelow(l, p, vocab, mid, dScratch) >= target) hi = mid; else lo = mid + 1;
                }
                keptEnd = lo;
            }
        }

        // the draw: the first kept token whose running mass exceeds u · total (keys ≤ T, so "below T + 1")
        double total = MassBelow(l, p, vocab, keptEnd, dScratch);
        ulong seed = (uint)pr[PSeedLo] | (ulong)(uint)pr[PSeedHi] << 32;
        double u = Sampler.Uniform(seed, (ulong)pr[PCompletionIndex]) * total;
        ulong last = 0;
        for (int i = Group.IdxX; i < vocab; i += Group.DimX)
        {
            ulong key = Key(l[i], i);
            if (p[i] >= 0 && key < keptEnd && key > last) last = key;
        }
        last = ~GroupMin(~last, uScratch);
        ulong chosen = last;
        if (MassBelow(l, p, vocab, keptEnd, dScratch, last) > u)
        {
            ulong lo = 0, hi = last;
            while (lo < hi)
            {
                ulong mid = lo + (hi - lo) / 2;
                if (MassBelow(l, p, vocab, keptEnd, dScratch, mid) > u) hi = mid; else lo = mid + 1;
            }
            chosen = lo;
        }
        if (!processed)
        {
            Chosen(l, tokens, lp, entries, pr, row, (int)(chosen & 0xFFFFFFFFu), wanted >= 0, false, lse, uScratch);
            return;
        }
        if (Group.IdxX != 0) return;
        // the draw's distribution: a kept token's probability over the kept mass, -inf for the removed
        int drawn = (int)(chosen & 0xFFFFFFFFu);
        tokens[row] = drawn;
        lp[0] = (float)Math.Log(p[drawn] / total);
        for (int j = 0; j < wanted; j++)
        {
            int id = ids[j];
            bool kept = p[id] >= 0 && Key(l[id], id) < keptEnd;
            lp[1 + j] = kept ? (float)Math.Log(p[id] / total) : float.NegativeInfinity;
        }
    }

    /// <summary>
    /// Stores the sampled token and its log-probability: of the logits it was drawn from, or of the raw ones (the
    /// logit its bias or penalty entry kept, a bias's first where it has both; a mask leaves a sampled token as it
    /// was). Called by the whole group.
    /// </summary>
    static void Chosen(ArrayView<float> l, ArrayView<int> tokens, ArrayView<float> lp, ArrayView<int> entries,
        ArrayView<int> pr, int row, int token, bool wanted, bool processed, float lse, ArrayView<ulong> uScratch)
    {
        float logit = l[token];
        if (wanted && !processed && pr[PBiasCount] + pr[PPenaltyCount] > 0)
        {
            ulong found = Stashed(entries, pr[PBiasOffset], pr[PBiasCount], token, 0);
            ulong penalised = Stashed(entries, pr[PPenaltyOffset], pr[PPenaltyCount], token, 1);
            found = GroupMin(penalised < found ? penalised : found, uScratch);
            if (found != ulong.MaxValue) logit = Interop.IntAsFloat((uint)found);
        }
        if (Group.IdxX != 0) return;
        tokens[row] = token;
        if (wanted) lp[0] = logit - lse;
    }

    /// <summary>This thread's share of a row's entries: the logit kept for <paramref name="token"/>, keyed below
    /// entries of a later <paramref name="rank"/>, or ulong.MaxValue.</summary>
    static ulong Stashed(ArrayView<int> entries, long offset, int count, int token, ulong rank)
    {
        ulong found = ulong.MaxValue;
        for (int e = Group.IdxX; e < count; e += Group.DimX)
            if (entries[2 * (offset + e)] == token) found = rank << 32 | (uint)entries[2 * (offset + e) + 1];
        return found;
    }

    /// <summary>
    /// Writes the <paramref name="k"/> most likely tokens' log-probabilities (ids ascending by key: highest logit
    /// first, ties to the lower id, as the CPU sampler) and returns log Σ exp(logit), computed as
    /// <see cref="Sampler.LogSumExp"/>. Each of the k is one pass of a group minimum over the keys above the last:
    /// k ≤ 20 passes, no sort.
    /// </summary>
    static float TopLogprobs(ArrayView<float> l, int vocab, int k, ArrayView<float> lp, ArrayView<int> ids,
        ArrayView<double> dScratch, ArrayView<ulong> uScratch)
    {
        ulong top = ulong.MaxValue;
        for (int i = Group.IdxX; i < vocab; i += Group.DimX)
        {
            ulong key = Key(l[i], i);
            top = key < top ? key : top;
        }
        top = GroupMin(top, uScratch);
        float max = l[(int)(top & 0xFFFFFFFFu)];
        double sum = 0;
        for (int i = Group.IdxX; i < vocab; i += Group.DimX) sum += MathF.Exp(l[i] - max);
        float lse = max + (float)Math.Log(GroupSum(sum, dScratch));
        ulong last = top;
        for (int j = 0; j < k; j++)
        {
            if (j > 0)
            {
                ulong next = ulong.MaxValue;
                for (int i = Group.IdxX; i < vocab; i += Group.DimX)
                {
                    ulong key = Key(l[i], i);
                    if (key > last && key < next) next = key;
                }
                last = GroupMin(next, uScratch);
            }
            if (Group.IdxX == 0)
            {
                int id = (int)(last & 0xFFFFFFFFu);
                ids[j] = id;
                lp[1 + j] = l[id] - lse;
            }
        }
        return lse;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    static ulong Key(float logit, int id) => (ulong)DeviceMath.DescendingKey(logit) << 32 | (uint)id;

    /// <summary>Σ p over kept tokens (p ≥ 0, key &lt; end) whose key is &lt; below, or ≤ atMost when
    /// given.</summary>
    static double MassBelow(ArrayView<float> l, ArrayView<float> p, int vocab, ulong below, ArrayView<double> scratch,
        ulong atMost = ulong.MaxValue)
    {
        double mass = 0;
        for (int i = Group.IdxX; i < vocab; i += Group.DimX)
        {
            float pi = p[i];
            ulong key = Key(l[i], i);
            if (pi > 0 && key < below && key <= atMost) mass += pi;
        }
        return GroupSum(mass, scratch);
    }

    /// <summary>Sum over the whole group, identical in every thread (partials added in warp order, so the result is
    /// deterministic).</summary>
    static double GroupSum(double v, ArrayView<double> scratch)
    {
        int lanes = Math.Min(Warp.WarpSize, Group.DimX);
        v = DeviceMath.LaneSum(v, lanes);
        if (Group.DimX <= lanes) return v;
        if (Warp.LaneIdx == 0) scratch[Warp.WarpIdx] = v;
        Group.Barrier();
        double total = 0;
        for (int w = 0; w < Group.DimX / lanes; w++) total += scratch[w];
        Group.Barrier();
        return total;
    }

    static ulong GroupMin(ulong v, ArrayView<ulong> scratch)
    {
        int lanes = Math.Min(Warp.WarpSize, Group.DimX);
        v = DeviceMath.LaneMin(v, lanes);
        if (Group.DimX <= lanes) return v;
        if (Warp.LaneIdx == 0) scratch[Warp.WarpIdx] = v;
        Group.Barrier();
        ulong min = ulong.MaxValue;
        for (int w = 0; w < Group.DimX / lanes; w++) min = scratch[w] < min ? scratch[w] : min;
        Group.Barrier();
        return min;
    }
}
