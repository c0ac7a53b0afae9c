using System.Runtime.CompilerServices;
using ILGPU;
using Weft.GpuRuntime.Sampling;
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
    /// the row's penalty entries and the number of top log-probabilities plus one (0: none).</summary>
    public const int ParamInts = 16;
    public const int FlagGreedy = 1, FlagOnHost = 2, FlagProcessed = 4;
    public const int PFlags = 0, PTopK = 1, PTemperature = 2, PTopP = 3, PMinP = 4, PRepetition = 5, PPresence = 6,
        PFrequency = 7, PSeedLo = 8, PSeedHi = 9, PCompletionIndex = 10, PPenaltyOffset = 11, PPenaltyCount = 12,
        PLogprobs = 13;
    /// <summary>Floats per row of the log-probabilities: the sampled token's, then the top ones'.</summary>
    public const int LogprobStride = 1 + SamplingParams.MaxLogprobs;

    const int MaxWarps = 32;

    /// <param name="probs">Scratch [rows, vocab]: each token's probability once computed, or -1 outside the kept
    /// set.</param>
    /// <param name="penalties">(token, generated count) per distinct token of the penalised rows' histories.</param>
    /// <param name="logprobs">[rows, <see cref="LogprobStride"/>] the log-probability of the sampled token, then of
    /// the top tokens, whose ids go to <paramref name="logprobIds"/> [rows, 20]: the log-softmax of the raw logits
    /// (rows that ask for them carry no penalty then: those sample on the host), or with
    /// <see cref="FlagProcessed"/> of the distribution drawn from, as <see cref="Sampler"/> reports it.</param>
    public static void Sample(ArrayView<float> logits, ArrayView<float> probs, ArrayView<int> parameters,
        ArrayView<int> penalties, ArrayView<int> tokens, ArrayView<float> logprobs, ArrayView<int> logprobIds,
        int vocab)
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
        float lse = wanted >= 0 && !processed ? TopLogprobs(l, vocab, wanted, lp, ids, dScratch, uScratch) : 0f;

        float rep = Interop.IntAsFloat((uint)pr[PRepetition]), presence = Interop.IntAsFloat((uint)pr[PPresence]),
            frequency = Interop.IntAsFloat((uint)pr[PFrequency]);
        int entries = pr[PPenaltyCount];
        long entry0 = pr[PPenaltyOffset];
        for (int e = Group.IdxX; e < entries; e += Group.DimX)
        {
            int token = penalties[2 * (entry0 + e)], count = penalties[2 * (entry0 + e) + 1];
            float v = l[token];
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
            if (Group.IdxX == 0) Chosen(l, tokens, lp, row, (int)(best & 0xFFFFFFFFu), wanted, lse);
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
        if (Group.IdxX != 0) return;
        if (!processed)
        {
            Chosen(l, tokens, lp, row, (int)(chosen & 0xFFFFFFFFu), wanted, lse);
            return;
        }
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

    static void Chosen(ArrayView<float> l, ArrayView<int> tokens, ArrayView<float> lp, int row, int token, int wanted,
        float lse)
    {
        tokens[row] = token;
        if (wanted >= 0) lp[0] = l[token] - lse;
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
