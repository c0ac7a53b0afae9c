using System.Runtime.InteropServices;
using ILGPU;
using ILGPU.Runtime;
using ILGPU.Runtime.CPU;
using ILGPU.Runtime.Cuda;
using Weft.GpuRuntime.Sampling;
using Weft.GpuRuntime.Sampling.Grammar;
using Weft.Models;
using Weft.Models.Gguf;
using Weft.Scheduling;

namespace Weft.GpuRuntime.Engine.Ilgpu;

/// <summary>
/// How kernels are laid over an accelerator's threads: <see cref="Lanes"/> threads share a row or an output (a warp on
/// CUDA), groups of <see cref="GroupSize"/> threads, at most <see cref="MaxGroups"/> groups for grid-stride kernels,
/// and matmuls of at least <see cref="TiledFromRows"/> rows use the shared-memory tiles.
/// </summary>
public sealed record LaunchShape(int Lanes, int GroupSize, int MaxGroups, int TiledFromRows)
{
    /// <summary>ILGPU's CPU accelerator runs each thread of a group as an OS thread and every barrier or shuffle as a
    /// rendezvous of those threads, so one-thread groups (no cross-thread reduction at all) are by far its fastest
    /// shape.</summary>
    public static LaunchShape Cpu(int threads) => new(1, 1, 4 * threads, int.MaxValue);

    /// <summary>A warp per row or output, eight warps per group; tiles from 33 rows, where a row tile of 8 would
    /// re-read weights 5 times.</summary>
    public static LaunchShape Cuda(int warpSize, int multiprocessors) =>
        new(warpSize, 8 * warpSize, 32 * multiprocessors, 33);
}

/// <summary>
/// The ILGPU backend: CUDA on NVIDIA GPUs, or ILGPU's CPU accelerator running the very same kernels (the way they are
/// tested without a GPU). Weights are uploaded once in their own format, the KV pool and every buffer a step needs are
/// allocated before the first step, a step uploads only its integers (and its constrained rows' token masks, a bit per
/// token) and reads back only the sampled token ids.
/// <para>
/// Each operation of <see cref="IBackend"/> is one fused launch on the accelerator's default stream, queued as it is
/// called: RMSNorm with the rounding of the next matmul's input, Q/K/V as one matmul, gate and up with SwiGLU, Wo and
/// down adding into the residual, RoPE with the KV store, the logits gather with the final norm. A matmul whose input
/// no norm rounded rounds it in a launch of its own. <see cref="LaunchesPerStep"/> counts them.
/// </para>
/// </summary>
public sealed class IlgpuBackend : IBackend, IDeviceMemory, IBandwidthProbe, ILaunchCounter
{
    sealed class IlgpuTensor(MemoryBuffer1D<float, Stride1D.Dense> buffer) : DeviceTensor
    {
        public readonly MemoryBuffer1D<float, Stride1D.Dense> Buffer = buffer;
        public ArrayView<float> View => Buffer.View;
        public override long Length => Buffer.Length;
    }

    readonly Context _context;
    readonly Accelerator _accelerator;
    readonly string _device;
    readonly LaunchShape _shape;
    readonly List<IlgpuTensor> _tensors = [];
    readonly List<IlgpuWeight> _weights = [];
    readonly Dictionary<GgmlType, FormatKernels> _formats = [];

    readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>,
        ArrayView<float>, ArrayView<int>, NormArgs> _normPrep;
    readonly Action<Index1D, ArrayView<float>, ArrayView<float>> _swiGlu, _geGlu;
    readonly Action<Index1D, ArrayView<float>, float> _scale;
    readonly Action<Index1D, ArrayView<float>, float, float> _softCap;
    readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>, ArrayView<int>,
        ArrayView<int>, ArrayView<float>, ArrayView<int>, int> _sample;
    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>,
        ArrayView<int>, F16Cache, RopeArgs>? _ropeF16;
    Action<KernelConfig, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<int>,
        ArrayView<int>, F32Cache, RopeArgs>? _ropeF32;
    Action<KernelConfig, ArrayView<float>, ArrayView<float>, F16Cache, ArrayView<int>, ArrayView<int>, ArrayView<int>,
        AttentionArgs>? _attentionF16;
    Action<KernelConfig, ArrayView<float>, ArrayView<float>, F32Cache, ArrayView<int>, ArrayView<int>, ArrayView<int>,
        AttentionArgs>? _attentionF32;

    // the rounded copy of a matmul input ([rows, cols] floats) and its block scales and q8_1 sums (a pair per 32
    // columns), sized for the largest activation
    MemoryBuffer1D<float, Stride1D.Dense>? _xq, _xs;
    // sampling scratch [rows, vocab]: probabilities, sized like the largest activation (the logits)
    MemoryBuffer1D<float, Stride1D.Dense>? _probs;
    (IlgpuTensor? Tensor, InputPrep Prep, int Rows) _prepared;

    // KV pool: per layer K then V, each [numBlocks, kvHeads, blockSize, headDim], f16 or f32 (windowBlocks for a
    // sliding-window layer where the engine keeps those in their own pool)
    MemoryBuffer1D<ushort, Stride1D.Dense>? _kvHalf;
    MemoryBuffer1D<float, Stride1D.Dense>? _kvFloat;
    // cos/sin per position; the sliding-window layers' own where their RoPE base differs (gemma3)
    MemoryBuffer1D<float, Stride1D.Dense>? _ropeTable, _ropeTableSliding;
    ModelConfig? _config;
    // per layer: where its K starts in the pool and its elements (V follows), and whether it is in the window pool
    long[] _kvOffset = [], _kvElements = [];
    bool[] _windowed = [];
    int _numBlocks, _blockSize, _ropePositions;

    // the step's integers: one pinned host array and its device copy, in regions at fixed offsets
    StepInputs? _step;
    PageLockedArray1D<int>? _hostInts, _hostPenalties, _hostSampled, _hostLogprobIds, _hostMasks;
    MemoryBuffer1D<int, Stride1D.Dense>? _ints, _penalties, _sampled, _logprobIds, _masks;
    PageLockedArray1D<float>? _hostLogprobs;
    MemoryBuffer1D<float, Stride1D.Dense>? _logprobs;
    // whether a row of this step samples on the device and asks for log-probabilities: only then do they come back
    bool _deviceLogprobs;
    int _oPositions, _oSlots, _oRowSeq, _oTables, _oWindowSlots, _oWindowTables, _oLogitRows, _oParams, _intsLength;
    int[] _tokenMark = [], _tokenEntry = [];
    int _markStamp;
    Sampler? _hostSampler;
    float[] _hostRow = [];
    readonly List<int> _onHost = [];
    // rows whose constraint's mask goes to the device, in the order of their mask slots
    readonly List<int> _masked = [];
    int _launches;

    /// <param name="cudaDevice">Which CUDA device, for <see cref="EngineKind.Cuda"/>.</param>
    public IlgpuBackend(EngineKind kind, int cudaDevice = 0) : this(kind switch
    {
        EngineKind.Cuda => null,
        EngineKind.IlgpuCpu => new CPUDevice(2, 1, Environment.ProcessorCount),
        _ => throw new ArgumentException($"the ILGPU backend runs on cuda or ilgpu-cpu, not {kind.Name()}"),
    }, null, cudaDevice)
    { }

    /// <param name="cpu">The CPU accelerator's simulated device, or null for CUDA device
    /// <paramref name="cudaDevice"/>.</param>
    /// <param name="shape">The launch shape; null picks the accelerator's default (tests force GPU-like shapes on the
    /// CPU).</param>
    internal IlgpuBackend(CPUDevice? cpu, LaunchShape? shape, int cudaDevice = 0)
    {
        _context = Context.Create(b =>
        {
            if (cpu is null) b.Cuda(); else b.CPU(cpu);
            b.EnableAlgorithms();
        });
        try
        {
            if (cpu is null)
            {
                var devices = _context.GetCudaDevices();
                if (devices.Count == 0)
                    throw new NotSupportedException(
                        "engine 'cuda' needs an NVIDIA GPU with its driver (libcuda), and none was found");
                if (cudaDevice >= devices.Count)
                    throw new NotSupportedException(
                        $"engine 'cuda': there is no device {cudaDevice} (found {devices.Count})");
                var cuda = devices[cudaDevice].CreateCudaAccelerator(_context);
                _accelerator = cuda;
                _device = $"cuda: {cuda.Name}, {cuda.MemorySize / (double)(1L << 30):F0} GiB";
                _shape = shape ?? LaunchShape.Cuda(cuda.WarpSize, cuda.NumMultiprocessors);
            }
            else
            {
                _accelerator = _context.GetCPUDevice(0).CreateCPUAccelerator(_context);
                _device = $"ilgpu-cpu: ILGPU CPU accelerator, {cpu.NumMultiprocessors} threads";
                _shape = shape ?? LaunchShape.Cpu(cpu.NumMultiprocessors);
            }
            if (_shape.Lanes > Kernels.MaxLanes || _shape.Lanes > _accelerator.WarpSize && _shape.Lanes > 1
                || _shape.GroupSize % _shape.Lanes != 0)
                throw new ArgumentException(
                    $"launch shape {_shape} does not fit the accelerator (warp size {_accelerator.WarpSize})");
            _normPrep = _accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<float>, ArrayView<int>, NormArgs>(Kernels.NormPrep);
            _swiGlu = _accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(
                Kernels.SwiGlu);
            _geGlu = _accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, ArrayView<float>>(
                Kernels.GeGlu);
            _scale = _accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, float>(Kernels.Scale);
            _softCap = _accelerator.LoadAutoGroupedStreamKernel<Index1D, ArrayView<float>, float, float>(
                Kernels.SoftCap);
            _sample = _accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<int>, ArrayView<int>,
                ArrayView<int>, ArrayView<int>, ArrayView<float>, ArrayView<int>, int>(SamplingKernel.Sample);
        }
        catch
        {
            _accelerator?.Dispose();
            _context.Dispose();
            throw;
        }
    }

    /// <summary>CUDA devices present, found without keeping anything open.</summary>
    public static int CudaDeviceCount()
    {
        using var context = Context.Create(b => b.Cuda());
        return context.GetCudaDevices().Count;
    }

    /// <summary>Kernel launches of the last completed step.</summary>
    public int LaunchesPerStep { get; private set; }

    public string Description => _numBlocks > 0 ? $"{_device}; KV pool {_numBlocks} blocks" : _device;

    /// <summary>Free device memory now (CUDA), for sizing the KV pool after the weights are loaded; null on the CPU
    /// accelerator.</summary>
    public long? FreeMemoryBytes
    {
        get
        {
            if (_accelerator is not CudaAccelerator) return null;
            _accelerator.Bind();
            var error = CudaAPI.CurrentAPI.GetMemoryInfo(out long free, out long _);
            return error == CudaError.CUDA_SUCCESS
                ? free
                : throw new InvalidOperationException($"cuMemGetInfo failed: {error}");
        }
    }

    /// <summary>
    /// CUDA: device memory bandwidth as a 512 MiB device-to-device copy measures it (bytes read plus bytes written per
    /// second, best of five), the yardstick of a decode step that streams the weights; null on the CPU accelerator.
    /// </summary>
    public double? MeasureCopyBandwidth()
    {
        if (_accelerator is not CudaAccelerator) return null;
        const long bytes = 512L << 20;
        using var a = _accelerator.Allocate1D<float>(bytes / sizeof(float));
        using var b = _accelerator.Allocate1D<float>(bytes / sizeof(float));
        a.MemSetToZero();
        double best = 0;
        for (int i = 0; i < 6; i++)
        {
            _accelerator.Synchronize();
            long start = System.Diagnostics.Stopwatch.GetTimestamp();
            a.CopyTo(b);
            _accelerator.Synchronize();
            if (i > 0)
                best = Math.Max(best, 2.0 * bytes / System.Diagnostics.Stopwatch.GetElapsedTime(start).TotalSeconds);
        }
        return best;
    }

    public DeviceTensor Allocate(long floats)
    {
        var t = new IlgpuTensor(_accelerator.Allocate1D<float>(Math.Max(1, floats)));
        t.Buffer.MemSetToZero();
        _tensors.Add(t);
        if (_xq is null || floats > _xq.Length)
        {
            // a matmul's input and the logits are never larger than the largest activation
            _xq?.Dispose();
            _xs?.Dispose();
            _probs?.Dispose();
            _xq = _accelerator.Allocate1D<float>(floats);
            _xs = _accelerator.Allocate1D<float>(2 * (floats / GgmlTypeTraits.Q8_0.BlockSize + 1));
            _probs = _accelerator.Allocate1D<float>(floats);
        }
        return t;
    }

    public unsafe DeviceWeight LoadWeight(GgufFile file, GgufTensorInfo tensor)
    {
        byte* src = file.DataPointer(tensor);
        IlgpuWeight w;
        if (tensor.Dims.Length == 1)
        {
            if (tensor.Type != GgmlType.F32)
                throw file.Fail(
                    $"vector '{tensor.Name}' is stored as {tensor.Type}; the ILGPU backend reads f32 vectors");
            var floats = _accelerator.Allocate1D<float>(tensor.ElementCount);
            floats.View.CopyFromCPU(ref *(float*)src, tensor.ElementCount);
            w = new IlgpuWeight(tensor, FloatFormat.F32, null, floats);
        }
        else
        {
            var format = IlgpuFormats.Find(tensor.Type) ?? throw file.Fail(
                $"tensor '{tensor.Name}' is stored as {tensor.Type}, which the ILGPU backend cannot read");
            int block = GgmlTypeTraits.Q8_0.BlockSize;
            if (tensor.Columns % block != 0)
                throw file.Fail($"tensor '{tensor.Name}' has rows of {tensor.Columns} elements; "
                    + $"the ILGPU backend needs a multiple of {block}");
            w = format.Upload(_accelerator, tensor, src);
            if (!_formats.ContainsKey(w.Type)) _formats[w.Type] = format.CreateKernels(_accelerator);
        }
        _weights.Add(w);
        return w;
    }

    public void AllocateKvCache(ModelConfig config, int numBlocks, int windowBlocks, int blockSize, KvCacheType type)
    {
        if (config.HeadDim > Kernels.MaxHeadDim || config.HeadDim % 8 != 0)
            throw new NotSupportedException("the ILGPU attention kernel needs a head dimension that is a multiple of 8 "
                + $"up to {Kernels.MaxHeadDim}, not {config.HeadDim}");
        _config = config;
        _numBlocks = numBlocks;
        _blockSize = blockSize;
        var layout = KvLayout.Of(config, numBlocks, windowBlocks, (long)config.KvHeads * blockSize * config.HeadDim);
        (_windowed, _kvOffset, _kvElements) = (layout.Windowed, layout.Offset, layout.Size);
        long total = layout.Total;
        if (type == KvCacheType.F16)
        {
            _kvHalf = _accelerator.Allocate1D<ushort>(total);
            _kvHalf.MemSetToZero();
            _ropeF16 = _accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<int>, ArrayView<int>, F16Cache, RopeArgs>(Kernels.RopeStore);
            _attentionF16 = _accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, F16Cache, ArrayView<int>,
                ArrayView<int>, ArrayView<int>, AttentionArgs>(Kernels.Attention);
        }
        else
        {
            _kvFloat = _accelerator.Allocate1D<float>(total);
            _kvFloat.MemSetToZero();
            _ropeF32 = _accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>,
                ArrayView<float>, ArrayView<int>, ArrayView<int>, F32Cache, RopeArgs>(Kernels.RopeStore);
            _attentionF32 = _accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, F32Cache, ArrayView<int>,
                ArrayView<int>, ArrayView<int>, AttentionArgs>(Kernels.Attention);
        }

        // cos/sin for every position, the very values the CPU backend computes per step
        _ropePositions = config.ContextLength;
        _ropeTable = RopeTable(config, config.RopeFreqBase, config.RopeFreqScale);
        if (Enumerable.Range(0, config.Layers).Any(config.OwnRope))
            _ropeTableSliding = RopeTable(config, config.RopeFreqBaseSliding, config.RopeFreqScaleSliding);
        _tokenMark = new int[config.VocabSize];
        _tokenEntry = new int[config.VocabSize];
        _hostSampler = new Sampler(config.VocabSize);
        _hostRow = new float[config.VocabSize];
        _accelerator.Synchronize();
    }

    MemoryBuffer1D<float, Stride1D.Dense> RopeTable(ModelConfig config, float freqBase, float freqScale)
    {
        var table = new float[(long)_ropePositions * config.RopeDim];
        for (int pos = 0; pos < _ropePositions; pos++)
            LlamaMath.RopeCosSin(config, freqBase, freqScale, pos,
                table.AsSpan((int)((long)pos * config.RopeDim), config.RopeDim));
        return _accelerator.Allocate1D(table);
    }

    /// <summary>Entries (logit biases and distinct tokens of penalised histories) a step may upload; rows beyond it
    /// sample on the host.</summary>
    const int PenaltyBudget = 1 << 18;

    public void BeginStep(StepInputs inputs)
    {
        if (_config is null) throw new InvalidOperationException("AllocateKvCache must come before the first step");
        // kernels of an earlier step may still read the device copy of the inputs, and its upload the pinned host
        // array refilled below: wait for them (a step that sampled or synchronized has left the stream idle)
        _accelerator.DefaultStream.Synchronize();
        LaunchesPerStep = _launches;
        _launches = 0;
        EnsureStepBuffers(inputs);
        _step = inputs;
        var ints = _hostInts!.GetArray();
        int T = inputs.NumTokens;
        for (int t = 0; t < T; t++)
            if (inputs.Positions[t] >= _ropePositions)
                throw new ArgumentException(
                    $"position {inputs.Positions[t]} is beyond the model's context length {_ropePositions}");
        inputs.TokenIds.AsSpan(0, T).CopyTo(ints);
        inputs.Positions.AsSpan(0, T).CopyTo(ints.AsSpan(_oPositions));
        inputs.SlotMapping.AsSpan(0, T).CopyTo(ints.AsSpan(_oSlots));
        inputs.RowSeq.AsSpan(0, T).CopyTo(ints.AsSpan(_oRowSeq));
        inputs.BlockTables.AsSpan(0, inputs.NumSeqs * inputs.MaxBlocksPerSeq).CopyTo(ints.AsSpan(_oTables));
        inputs.LogitRows.AsSpan(0, inputs.NumLogitRows).CopyTo(ints.AsSpan(_oLogitRows));
        int penalties = PackSampling(inputs, ints.AsSpan(_oParams), _hostPenalties!.GetArray());
        // only what this step uses: its rows and its sequences' block tables, then the logits rows and sampling
        // parameters
        int head = _oTables + inputs.NumSeqs * inputs.MaxBlocksPerSeq;
        _ints!.View.AsContiguous().SubView(0, head).CopyFromCPUUnsafeAsync(ref ints[0], head);
        if (inputs.NumWindowBlocks > 0)
        {
            inputs.WindowSlotMapping.AsSpan(0, T).CopyTo(ints.AsSpan(_oWindowSlots));
            int tables = inputs.NumSeqs * inputs.MaxBlocksPerSeq;
            inputs.WindowBlockTables.AsSpan(0, tables).CopyTo(ints.AsSpan(_oWindowTables));
            int length = _oWindowTables + tables - _oWindowSlots;
            _ints.View.AsContiguous().SubView(_oWindowSlots, length)
                .CopyFromCPUUnsafeAsync(ref ints[_oWindowSlots], length);
        }
        _ints.View.AsContiguous().SubView(_oLogitRows, _intsLength - _oLogitRows)
            .CopyFromCPUUnsafeAsync(ref ints[_oLogitRows], _intsLength - _oLogitRows);
        if (penalties > 0)
            _penalties!.View.AsContiguous().SubView(0, 2L * penalties)
                .CopyFromCPUUnsafeAsync(ref _hostPenalties.GetArray()[0], 2L * penalties);
    }

    public void CopyKvBlocks(ReadOnlySpan<BlockCopy> copies)
    {
        if (_kvHalf is not null) CopyKvBlocks(_kvHalf.View.AsContiguous(), copies);
        else CopyKvBlocks(_kvFloat!.View.AsContiguous(), copies);
    }

    /// <summary>Device-to-device copies on the stream the step's kernels run on, so they land before the step's
    /// first kernel writes the pool: a block is contiguous in each layer's K and V pools.</summary>
    void CopyKvBlocks<T>(ArrayView<T> pool, ReadOnlySpan<BlockCopy> copies) where T : unmanaged
    {
        var c = _config ?? throw new InvalidOperationException("AllocateKvCache must come before the first step");
        long block = (long)c.KvHeads * _blockSize * c.HeadDim;
        var stream = _accelerator.DefaultStream;
        for (int l = 0; l < _kvOffset.Length; l++)
        {
            if (_windowed[l]) continue;
            foreach (long at in (ReadOnlySpan<long>)[_kvOffset[l], _kvOffset[l] + _kvElements[l]]) // K, V
                foreach (var (source, destination) in copies)
                    pool.SubView(at + source * block, block)
                        .CopyTo(stream, pool.SubView(at + destination * block, block));
        }
    }

    void EnsureStepBuffers(StepInputs s)
    {
        if (_hostInts is not null)
        {
            if (s.MaxTokens * 4 + s.MaxSeqs * s.MaxBlocksPerSeq + s.MaxSeqs * (1 + SamplingKernel.ParamInts)
                + WindowInts(s) > _intsLength)
                throw new InvalidOperationException("the step's limits changed after the first step");
            return;
        }
        _oPositions = s.MaxTokens;
        _oSlots = 2 * s.MaxTokens;
        _oRowSeq = 3 * s.MaxTokens;
        _oTables = 4 * s.MaxTokens;
        _oWindowSlots = _oTables + s.MaxSeqs * s.MaxBlocksPerSeq;
        _oWindowTables = _oWindowSlots + (s.NumWindowBlocks > 0 ? s.MaxTokens : 0);
        _oLogitRows = _oWindowSlots + WindowInts(s);
        _oParams = _oLogitRows + s.MaxSeqs;
        _intsLength = _oParams + s.MaxSeqs * SamplingKernel.ParamInts;
        _hostInts = _accelerator.AllocatePageLocked1D<int>(_intsLength);
        _ints = _accelerator.Allocate1D<int>(_intsLength);
        _hostPenalties = _accelerator.AllocatePageLocked1D<int>(2L * PenaltyBudget);
        _penalties = _accelerator.Allocate1D<int>(2L * PenaltyBudget);
        _hostSampled = _accelerator.AllocatePageLocked1D<int>(s.MaxSeqs);
        _sampled = _accelerator.Allocate1D<int>(s.MaxSeqs);
        _hostLogprobs = _accelerator.AllocatePageLocked1D<float>((long)s.MaxSeqs * SamplingKernel.LogprobStride);
        _logprobs = _accelerator.Allocate1D<float>((long)s.MaxSeqs * SamplingKernel.LogprobStride);
        _hostLogprobIds = _accelerator.AllocatePageLocked1D<int>((long)s.MaxSeqs * SamplingParams.MaxLogprobs);
        _logprobIds = _accelerator.Allocate1D<int>((long)s.MaxSeqs * SamplingParams.MaxLogprobs);
        long maskInts = (long)s.MaxSeqs * SamplingKernel.MaskWords(s.VocabSize);
        _hostMasks = _accelerator.AllocatePageLocked1D<int>(maskInts);
        _masks = _accelerator.Allocate1D<int>(maskInts);
    }

    /// <summary>
    /// Writes each logits row's sampling parameters, its logit bias as (token, bias) entries and, for penalised rows,
    /// one (token, generated count) entry per distinct token of its history, and gives each constrained row a mask
    /// slot (<see cref="Sample"/> fills them). Rows whose entries exceed the budget, or whose constraint has no
    /// bitmask, are flagged to sample on the host.
    /// </summary>
    int PackSampling(StepInputs s, Span<int> parameters, int[] entries)
    {
        int used = 0;
        _onHost.Clear();
        _masked.Clear();
        _deviceLogprobs = false;
        for (int i = 0; i < s.NumLogitRows; i++)
        {
            var item = s.Items[s.LogitItems[i]];
            var p = item.Sampling;
            var pr = parameters.Slice(i * SamplingKernel.ParamInts, SamplingKernel.ParamInts);
            pr.Clear();
            pr[SamplingKernel.PFlags] = (p.IsGreedy ? SamplingKernel.FlagGreedy : 0)
                | (p.LogprobsMode == LogprobsMode.Processed ? SamplingKernel.FlagProcessed : 0);
            pr[SamplingKernel.PTopK] = p.TopK;
            pr[SamplingKernel.PTemperature] = BitConverter.SingleToInt32Bits(p.Temperature);
            pr[SamplingKernel.PTopP] = BitConverter.SingleToInt32Bits(p.TopP);
            pr[SamplingKernel.PMinP] = BitConverter.SingleToInt32Bits(p.MinP);
            pr[SamplingKernel.PRepetition] = BitConverter.SingleToInt32Bits(p.RepetitionPenalty);
            pr[SamplingKernel.PPresence] = BitConverter.SingleToInt32Bits(p.PresencePenalty);
            pr[SamplingKernel.PFrequency] = BitConverter.SingleToInt32Bits(p.FrequencyPenalty);
            pr[SamplingKernel.PSeedLo] = (int)(uint)item.Seed;
            pr[SamplingKernel.PSeedHi] = (int)(uint)(item.Seed >> 32);
            pr[SamplingKernel.PCompletionIndex] = item.Tokens.Count - item.NumPromptTokens;
            pr[SamplingKernel.PLogprobs] = p.Logprobs + 1 ?? 0;
            int start = used;
            // A constraint that cannot give its mask as bits only knows how to change a row of logits: that row comes
            // back to the host (vocabulary-sized) and the CPU sampler applies it.
            bool fits = p.Constraint is null or IBitmaskConstraint
                && Bias(p.LogitBias, entries, ref used) && Penalties(item, entries, ref used);
            if (!fits)
            {
                used = start;
                pr[SamplingKernel.PFlags] |= SamplingKernel.FlagOnHost;
                _onHost.Add(i);
                continue;
            }
            _deviceLogprobs |= p.Logprobs is not null;
            pr[SamplingKernel.PBiasOffset] = start;
            pr[SamplingKernel.PBiasCount] = p.LogitBias?.Count ?? 0;
            pr[SamplingKernel.PPenaltyOffset] = start + pr[SamplingKernel.PBiasCount];
            pr[SamplingKernel.PPenaltyCount] = used - pr[SamplingKernel.PPenaltyOffset];
            if (p.Constraint is null) continue;
            pr[SamplingKernel.PFlags] |= SamplingKernel.FlagMasked;
            pr[SamplingKernel.PMaskSlot] = _masked.Count;
            _masked.Add(i);
        }
        return used;
    }

    /// <summary>Appends (token, bias bits) entries; false when they exceed the budget.</summary>
    static bool Bias(IReadOnlyDictionary<int, float>? bias, int[] entries, ref int used)
    {
        if (bias is null) return true;
        if (used + bias.Count > PenaltyBudget) return false;
        foreach (var (t, b) in bias)
        {
            entries[2 * used] = t;
            entries[2 * used + 1] = BitConverter.SingleToInt32Bits(b);
            used++;
        }
        return true;
    }

    /// <summary>Appends a penalised row's (token, generated count) entries; false when they exceed the
    /// budget.</summary>
    bool Penalties(StepItem item, int[] entries, ref int used)
    {
        var p = item.Sampling;
        if (!p.HasPenalties) return true;
        if (++_markStamp == int.MaxValue)
        {
            // stamps are about to wrap: start over, so an old mark can never equal a new stamp
            Array.Clear(_tokenMark);
            _markStamp = 1;
        }
        int stamp = _markStamp;
        var tokens = item.Tokens;
        // the repetition penalty touches every distinct token; presence and frequency only generated ones
        int from = p.RepetitionPenalty != 1 ? 0 : item.NumPromptTokens;
        for (int j = from; j < tokens.Count; j++)
        {
            int t = tokens[j];
            if (_tokenMark[t] != stamp)
            {
                if (used == PenaltyBudget) return false;
                _tokenMark[t] = stamp;
                _tokenEntry[t] = used;
                entries[2 * used] = t;
                entries[2 * used + 1] = 0;
                used++;
            }
            if (j >= item.NumPromptTokens) entries[2 * _tokenEntry[t] + 1]++;
        }
        return true;
    }

    static IlgpuTensor T(DeviceTensor t) => (IlgpuTensor)t;
    static IlgpuWeight W(DeviceWeight w) => (IlgpuWeight)w;
    static IlgpuWeight Matrix(DeviceWeight w) =>
        W(w) is { IsMatrix: true } m ? m : throw new ArgumentException($"'{w.Info.Name}' is not a matrix");

    public void Embed(DeviceWeight table, DeviceTensor x, int dim)
    {
        _prepared = default;
        var w = W(table);
        int rows = Step.NumTokens;
        _formats[w.Type].Embed(Grid1D((long)rows * dim / 8), w, Ints(0, rows), T(x).View, rows, dim);
        _launches++;
    }

    public void Scale(DeviceTensor x, int rows, int dim, float factor)
    {
        _prepared = default;
        _scale(rows * dim, T(x).View, factor);
        _launches++;
    }

    /// <summary>Two launches of the norm kernel, each head a row, in place.</summary>
    public void QkNorm(DeviceTensor q, DeviceTensor k, DeviceWeight qNorm, DeviceWeight kNorm, int rows, float eps)
    {
        var c = _config!;
        NormPrep(T(q), W(qNorm), T(q), rows * c.Heads, c.HeadDim, eps, gather: false, InputPrep.None);
        NormPrep(T(k), W(kNorm), T(k), rows * c.KvHeads, c.HeadDim, eps, gather: false, InputPrep.None);
        _prepared = default;
    }

    /// <summary>One launch: the norm, and y rounded (or quantized) for <paramref name="next"/>'s dots.</summary>
    public void RmsNormForMatMul(DeviceTensor x, DeviceWeight weight, DeviceTensor y, int rows, int dim, float eps,
        DeviceWeight next) => NormPrep(T(x), W(weight), T(y), rows, dim, eps, gather: false, Matrix(next).Prep);

    /// <summary>One launch, as <see cref="RmsNormForMatMul"/>, each row read from the logits row it is for.</summary>
    public void GatherNormLogitRows(DeviceTensor x, DeviceWeight weight, DeviceTensor y, int dim, float eps,
        DeviceWeight next) =>
        NormPrep(T(x), W(weight), T(y), Step.NumLogitRows, dim, eps, gather: true, Matrix(next).Prep);

    /// <summary>One launch over the three weights (their outputs side by side), unless their formats differ.</summary>
    public void QkvProjection(DeviceTensor x, DeviceWeight wq, DeviceWeight wk, DeviceWeight wv,
        DeviceWeight? bq, DeviceWeight? bk, DeviceWeight? bv, DeviceTensor q, DeviceTensor k, DeviceTensor v, int rows)
    {
        IlgpuWeight a = Matrix(wq), b = Matrix(wk), c = Matrix(wv);
        if (SameFormat(a, b) && SameFormat(a, c))
        {
            var p = Single(T(q), bq, null);
            (p.NA, p.NB, p.NC, p.YB, p.YC) = (a.Rows, b.Rows, c.Rows, T(k).View, T(v).View);
            (p.HasBiasB, p.BiasB, p.HasBiasC, p.BiasC) = (bk is null ? 0 : 1, Bias(bk), bv is null ? 0 : 1, Bias(bv));
            Launch(T(x), rows, a, b, c, p);
        }
        else
        {
            Launch(T(x), rows, a, a, a, Single(T(q), bq, null) with { NA = a.Rows });
            Launch(T(x), rows, b, b, b, Single(T(k), bk, null) with { NA = b.Rows });
            Launch(T(x), rows, c, c, c, Single(T(v), bv, null) with { NA = c.Rows });
        }
        _prepared = default;
    }

    /// <summary>One launch: each output is added into the residual as it is stored.</summary>
    public void MatMulAddResidual(DeviceTensor x, DeviceWeight w, DeviceTensor y, DeviceTensor residual, int rows)
    {
        var m = Matrix(w);
        Launch(T(x), rows, m, m, m, Single(T(y), null, T(residual)) with { NA = m.Rows });
        _prepared = default;
    }

    /// <summary>The matmul's launch, then the norm kernel adding each normalised row into the residual.</summary>
    public void MatMulNormAddResidual(DeviceTensor x, DeviceWeight w, DeviceTensor y, DeviceWeight norm, float eps,
        DeviceTensor residual, int rows)
    {
        MatMul(x, w, y, rows);
        int perGroup = _shape.GroupSize / _shape.Lanes;
        var args = new NormArgs
        {
            Rows = rows, Dim = w.Rows, Lanes = _shape.Lanes, Normalize = 1, Accumulate = 1, Eps = eps,
        };
        _normPrep(new KernelConfig(Math.Max(1, (rows + perGroup - 1) / perGroup), _shape.GroupSize), T(y).View,
            W(norm).Floats!.View, T(residual).View, _xq!.View, _xs!.View, Ints(0, 1), args);
        _launches++;
    }

    /// <summary>One launch unless the formats differ: a thread computes an output's gate and up, then SwiGLU.</summary>
    public void GateUpSwiGlu(DeviceTensor x, DeviceWeight gate, DeviceWeight up, DeviceTensor hidden,
        DeviceTensor upOut, int rows) => GateUpGlu(x, gate, up, hidden, upOut, rows, gelu: false);

    /// <summary>As <see cref="GateUpSwiGlu"/>, with GeGLU.</summary>
    public void GateUpGeGlu(DeviceTensor x, DeviceWeight gate, DeviceWeight up, DeviceTensor hidden,
        DeviceTensor upOut, int rows) => GateUpGlu(x, gate, up, hidden, upOut, rows, gelu: true);

    void GateUpGlu(DeviceTensor x, DeviceWeight gate, DeviceWeight up, DeviceTensor hidden, DeviceTensor upOut,
        int rows, bool gelu)
    {
        IlgpuWeight g = Matrix(gate), u = Matrix(up);
        if (SameFormat(g, u) && g.Rows == u.Rows)
        {
            var p = Single(T(hidden), null, null);
            (p.Mode, p.NA, p.NB, p.YB, p.Gelu) = (MatMulArgs.GateUp, g.Rows, u.Rows, T(upOut).View, gelu ? 1 : 0);
            Launch(T(x), rows, g, u, u, p);
        }
        else
        {
            Launch(T(x), rows, g, g, g, Single(T(hidden), null, null) with { NA = g.Rows });
            Launch(T(x), rows, u, u, u, Single(T(upOut), null, null) with { NA = u.Rows });
            (gelu ? _geGlu : _swiGlu)(rows * u.Rows, T(hidden).View, T(upOut).View);
            _launches++;
        }
        _prepared = default;
    }

    public void SoftCap(DeviceTensor logits, int rows, int width, float cap)
    {
        _prepared = default;
        _softCap(rows * width, T(logits).View, 1f / cap, cap);
        _launches++;
    }

    public void MatMul(DeviceTensor x, DeviceWeight w, DeviceTensor y, int rows)
    {
        var m = Matrix(w);
        Launch(T(x), rows, m, m, m, Single(T(y), null, null) with { NA = m.Rows });
        _prepared = default;
    }

    /// <summary>RoPE on q and k, and k and v into the pool, in one launch.</summary>
    public void RopeAndStoreKv(int layer, DeviceTensor q, DeviceTensor k, DeviceTensor v)
    {
        _prepared = default;
        var c = _config!;
        int rows = Step.NumTokens;
        var args = new RopeArgs
        {
            Rows = rows, Heads = c.Heads, KvHeads = c.KvHeads, HeadDim = c.HeadDim, RopeDim = c.RopeDim,
            Neox = c.Rope == RopeStyle.Neox ? 1 : 0, BlockSize = _blockSize,
            KBase = _kvOffset[layer], VBase = _kvOffset[layer] + _kvElements[layer],
            QScale = c.QueryScale,
        };
        var table = (c.OwnRope(layer) ? _ropeTableSliding : _ropeTable)!.View;
        var config = Grid1D((long)rows * (c.QDim / 2 + c.KvDim / 2 + c.KvDim));
        var positions = Ints(_oPositions, rows);
        var slots = Ints(_windowed[layer] ? _oWindowSlots : _oSlots, rows);
        var (qv, kv, vv) = (T(q).View, T(k).View, T(v).View);
        if (_kvHalf is not null) _ropeF16!(config, qv, kv, vv, table, positions, slots, HalfCache, args);
        else _ropeF32!(config, qv, kv, vv, table, positions, slots, new F32Cache(_kvFloat!.View), args);
        _launches++;
    }

    public void Attention(int layer, DeviceTensor q, DeviceTensor output)
    {
        _prepared = default;
        var c = _config!;
        var s = Step;
        int lanes = _shape.Lanes, group = c.Heads / c.KvHeads;
        // heads sharing a KV head go to one group (as many as fit): their reads of the same K/V blocks come together
        int headsPerGroup = Math.Min(Kernels.MaxHeadsPerGroup, _shape.GroupSize / lanes);
        while (group % headsPerGroup != 0) headsPerGroup--;
        var args = new AttentionArgs
        {
            Heads = c.Heads, KvHeads = c.KvHeads, HeadDim = c.HeadDim, Lanes = lanes, HeadsPerGroup = headsPerGroup,
            BlockSize = _blockSize, MaxBlocksPerSeq = s.MaxBlocksPerSeq,
            KBase = _kvOffset[layer], VBase = _kvOffset[layer] + _kvElements[layer],
            Window = c.Window(layer), Scale = c.ScoreScale, SoftCap = c.AttentionSoftCap,
            InverseSoftCap = c.AttentionSoftCap > 0 ? 1f / c.AttentionSoftCap : 0f,
        };
        var config = new KernelConfig(s.NumTokens * (c.Heads / headsPerGroup), headsPerGroup * lanes);
        var positions = Ints(_oPositions, s.NumTokens);
        var rowSeq = Ints(_oRowSeq, s.NumTokens);
        var tables = Ints(_windowed[layer] ? _oWindowTables : _oTables, s.NumSeqs * s.MaxBlocksPerSeq);
        var (qv, ov) = (T(q).View, T(output).View);
        if (_kvHalf is not null) _attentionF16!(config, qv, ov, HalfCache, positions, rowSeq, tables, args);
        else _attentionF32!(config, qv, ov, new F32Cache(_kvFloat!.View), positions, rowSeq, tables, args);
        _launches++;
    }

    public void Sample(DeviceTensor logits, int vocabSize, Span<int> tokens, StepLogprobs logprobs)
    {
        _prepared = default;
        var s = Step;
        int n = s.NumLogitRows;
        UploadMasks(s, vocabSize);
        _sample(new KernelConfig(n, _shape.GroupSize), T(logits).View, _probs!.View,
            _ints!.View.AsContiguous().SubView(_oParams, _intsLength - _oParams), _penalties!.View, _masks!.View,
            _sampled!.View, _logprobs!.View, _logprobIds!.View, vocabSize);
        _launches++;
        _sampled.View.AsContiguous().SubView(0, n).CopyToCPUUnsafeAsync(ref _hostSampled!.GetArray()[0], n);
        if (_deviceLogprobs)
        {
            long floats = (long)n * SamplingKernel.LogprobStride, ids = (long)n * SamplingParams.MaxLogprobs;
            _logprobs.View.AsContiguous().SubView(0, floats).CopyToCPUUnsafeAsync(ref _hostLogprobs!.GetArray()[0],
                floats);
            _logprobIds.View.AsContiguous().SubView(0, ids).CopyToCPUUnsafeAsync(ref _hostLogprobIds!.GetArray()[0],
                ids);
        }
        _accelerator.DefaultStream.Synchronize();
        _hostSampled.GetArray().AsSpan(0, n).CopyTo(tokens);
        if (_deviceLogprobs) CopyLogprobs(s, logprobs);
        // the constraints compute their next masks while the next forward pass runs
        foreach (int i in _masked) s.Items[s.LogitItems[i]].Sampling.Constraint!.Accepted(tokens[i]);
        foreach (int i in _onHost)
        {
            // this row's logits come back and the CPU sampler decides
            T(logits).View.SubView((long)i * vocabSize, vocabSize).CopyToCPU(_hostRow);
            var item = s.Items[s.LogitItems[i]];
            tokens[i] = item.Sampling.Logprobs is { } k
                ? _hostSampler!.Sample(_hostRow, item.Sampling, item.Seed, item.Tokens, item.NumPromptTokens,
                    logprobs.Ids(i)[..k], logprobs.Values(i)[..k], out logprobs.Sampled[i])
                : _hostSampler!.Sample(_hostRow, item.Sampling, item.Seed, item.Tokens, item.NumPromptTokens);
        }
        RowsSampledOnHost = _onHost.Count;
        LaunchesPerStep = _launches;
    }

    /// <summary>Logits rows of the last step that the CPU sampler decided.</summary>
    internal int RowsSampledOnHost { get; private set; }

    /// <summary>
    /// The constrained rows' masks, one slot each, uploaded before the sampling launch. They are asked for here, with
    /// the forward pass already queued, rather than in <see cref="BeginStep"/>: a constraint may still be computing
    /// its mask from the last token, and the device runs the forward pass meanwhile.
    /// </summary>
    void UploadMasks(StepInputs s, int vocabSize)
    {
        if (_masked.Count == 0) return;
        int words = SamplingKernel.MaskWords(vocabSize);
        var host = _hostMasks!.GetArray();
        for (int slot = 0; slot < _masked.Count; slot++)
        {
            var item = s.Items[s.LogitItems[_masked[slot]]];
            var bits = MemoryMarshal.Cast<int, ulong>(host.AsSpan(slot * words, words));
            ((IBitmaskConstraint)item.Sampling.Constraint!).Mask(item.Tokens, item.NumPromptTokens, bits);
        }
        long length = (long)_masked.Count * words;
        _masks!.View.AsContiguous().SubView(0, length).CopyFromCPUUnsafeAsync(ref host[0], length);
    }

    /// <summary>The device rows' log-probabilities, from the pinned copies into the step's.</summary>
    void CopyLogprobs(StepInputs s, StepLogprobs logprobs)
    {
        var values = _hostLogprobs!.GetArray();
        var ids = _hostLogprobIds!.GetArray();
        for (int i = 0; i < s.NumLogitRows; i++)
        {
            if (s.Items[s.LogitItems[i]].Sampling.Logprobs is not { } k) continue;
            int at = i * SamplingKernel.LogprobStride;
            logprobs.Sampled[i] = values[at];
            values.AsSpan(at + 1, k).CopyTo(logprobs.Values(i));
            ids.AsSpan(i * SamplingParams.MaxLogprobs, k).CopyTo(logprobs.Ids(i));
        }
    }

    /// <summary>Row <paramref name="row"/> of <paramref name="t"/>, copied once the stream has reached it.</summary>
    public float[] ReadRow(DeviceTensor t, int row, int width)
    {
        var result = new float[width];
        T(t).View.SubView((long)row * width, width).CopyToCPU(result);
        return result;
    }

    /// <summary>Overwrites the tensor's first values: the kernel tests hand both backends the same inputs.</summary>
    internal static void Write(DeviceTensor t, ReadOnlySpan<float> values) =>
        T(t).View.SubView(0, values.Length).CopyFromCPU(values);

    public void Synchronize() => _accelerator.DefaultStream.Synchronize();

    StepInputs Step => _step ?? throw new InvalidOperationException("BeginStep must come first");

    /// <summary>The window pool's slots and block tables, where the step has them.</summary>
    static int WindowInts(StepInputs s) => s.NumWindowBlocks > 0 ? s.MaxTokens + s.MaxSeqs * s.MaxBlocksPerSeq : 0;

    ArrayView<int> Ints(int offset, int length) => _ints!.View.AsContiguous().SubView(offset, Math.Max(1, length));

    KernelConfig Grid1D(long items)
    {
        long groups = Math.Clamp((items + _shape.GroupSize - 1) / _shape.GroupSize, 1, _shape.MaxGroups);
        return new KernelConfig((int)groups, _shape.GroupSize);
    }

    void NormPrep(IlgpuTensor x, IlgpuWeight weight, IlgpuTensor y, int rows, int dim, float eps, bool gather,
        InputPrep prep)
    {
        if (prep != InputPrep.None && dim % (prep == InputPrep.Q8K ? 256 : 32) != 0) prep = InputPrep.None;
        int perGroup = _shape.GroupSize / _shape.Lanes;
        var args = new NormArgs
        {
            Rows = rows,
            Dim = dim,
            Lanes = _shape.Lanes,
            Normalize = 1,
            Gather = gather ? 1 : 0,
            Prep = prep,
            Eps = eps,
        };
        _normPrep(new KernelConfig(Math.Max(1, (rows + perGroup - 1) / perGroup), _shape.GroupSize), x.View,
            weight.Floats!.View, y.View, _xq!.View, _xs!.View, Ints(_oLogitRows, Step.MaxSeqs), args);
        _launches++;
        _prepared = (y, prep, rows);
    }

    /// <summary>Weights one launch can run together: the same format and input width.</summary>
    static bool SameFormat(IlgpuWeight a, IlgpuWeight b) => a.Type == b.Type && a.Columns == b.Columns;

    /// <summary>A view for an absent bias (never read: its HasBias flag is 0).</summary>
    ArrayView<float> Bias(DeviceWeight? bias) => bias is null ? _xs!.View : W(bias).Floats!.View;

    /// <summary>Arguments of one matmul into <paramref name="y"/> (and a residual); NA is the caller's.</summary>
    MatMulArgs Single(IlgpuTensor y, DeviceWeight? bias, IlgpuTensor? residual) => new()
    {
        Mode = MatMulArgs.Segments, YA = y.View, YB = y.View, YC = y.View,
        HasBiasA = bias is null ? 0 : 1, BiasA = Bias(bias), BiasB = _xs!.View, BiasC = _xs.View,
        Residual = residual is null ? 0 : 1, Res = (residual ?? y).View,
    };

    /// <summary>One matmul launch over weights <paramref name="a"/> (and b, c: the same format) reading x.</summary>
    void Launch(IlgpuTensor x, int rows, IlgpuWeight a, IlgpuWeight b, IlgpuWeight c, MatMulArgs p)
    {
        (p.Rows, p.Cols, p.Lanes) = (rows, a.Columns, _shape.Lanes);
        var input = Input(x, rows, a.Columns, a.Prep);
        var kernels = _formats[a.Type];
        if (rows >= _shape.TiledFromRows)
        {
            int tiles = (rows + Kernels.TileRows - 1) / Kernels.TileRows
                * ((p.Outputs + Kernels.TileOutputs - 1) / Kernels.TileOutputs);
            kernels.MatMulTiled(new KernelConfig(tiles, Kernels.TileThreads), a, b, c, input.Cast<Float4>(), _xs!.View,
                p);
        }
        else
        {
            int perGroup = _shape.GroupSize / _shape.Lanes;
            int groups = Math.Clamp((p.Outputs + perGroup - 1) / perGroup, 1, _shape.MaxGroups);
            kernels.MatVec(new KernelConfig(groups, _shape.GroupSize), a, b, c, input.Cast<Float4>(), _xs!.View, p);
        }
        _launches++;
    }

    /// <summary>
    /// The view a matmul reads: x itself for f32 weights, else x rounded to the weights' dot type, made now unless the
    /// norm that wrote x made it (every other operation forgets what it made, so it cannot be stale).
    /// </summary>
    ArrayView<float> Input(IlgpuTensor x, int rows, int cols, InputPrep prep)
    {
        if (prep == InputPrep.None) return x.View;
        if (_prepared != (x, prep, rows))
        {
            var args = new NormArgs { Rows = rows, Dim = cols, Lanes = _shape.Lanes, Normalize = 0, Prep = prep };
            int perGroup = _shape.GroupSize / _shape.Lanes;
            _normPrep(new KernelConfig(Math.Max(1, (rows + perGroup - 1) / perGroup), _shape.GroupSize), x.View,
                _xs!.View, x.View, _xq!.View, _xs.View, Ints(0, 1), args);
            _launches++;
            _prepared = (x, prep, rows);
        }
        return _xq!.View;
    }

    F16Cache HalfCache => new(_kvHalf!.View, _kvHalf.View.AsContiguous().Cast<U4>());

    public void Dispose()
    {
        foreach (var t in _tensors) t.Buffer.Dispose();
        foreach (var w in _weights) w.Dispose();
        _tensors.Clear();
        _weights.Clear();
        foreach (var d in new IDisposable?[] { _xq, _xs, _probs, _kvHalf, _kvFloat, _ropeTable, _ropeTableSliding,
            _ints, _penalties, _sampled, _hostInts, _hostPenalties, _hostSampled, _logprobs, _logprobIds, _hostLogprobs,
            _hostLogprobIds, _masks, _hostMasks })
            d?.Dispose();
        _accelerator.Dispose();
        _context.Dispose();
    }
}
