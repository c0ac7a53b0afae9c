using Microsoft.Extensions.DependencyInjection;
using Orleans.TestingHost;
using Weft.Abstractions;
using Weft.GpuRuntime.Engine;
using Weft.Grains;
using Weft.Models;
using Weft.Models.Chat;
using Weft.Models.Gguf;
using Weft.Models.Tokenization;

namespace Weft.Testing;

/// <summary>An in-process Orleans cluster serving a small generated model on the cpu engine.</summary>
public class WeftCluster : IAsyncLifetime
{
    public static readonly DemoModelShape Shape = new("grains-test", 64, 2, 4, 2, 160, 1024, 1024, GgmlType.F32);

    readonly string _dir = Directory.CreateTempSubdirectory("weft-grains-").FullName;
    public InProcessTestCluster Cluster { get; private set; } = null!;
    public string ModelPath => Path.Combine(_dir, "model.gguf");
    public IGrainFactory Grains => Cluster.Client;

    /// <summary>The engine and scheduler limits; subclasses shrink them to test pressure.</summary>
    protected virtual ModelHostOptions Options => new()
    {
        Model = ModelPath,
        // one engine thread: several clusters run side by side in a test run, and the parallel kernels have tests of
        // their own
        Engine = new EngineOptions
        {
            Engine = EngineKind.Cpu,
            MaxNumSeqs = 128,
            MaxNumBatchedTokens = 512,
            KvBlocks = 1024,
            BlockSize = 16,
            Threads = 1,
        },
    };

    protected virtual int Silos => 1;

    public async ValueTask InitializeAsync()
    {
        DemoModel.Write(ModelPath, Shape, DemoVocabulary.SentencePiece(Shape.VocabSize, ChatTemplates.TinyLlama));
        var builder = new InProcessTestClusterBuilder((short)Silos);
        var options = Options;
        builder.ConfigureSilo((_, silo) =>
        {
            silo.AddMemoryGrainStorage(WeftStorage.Name);
            silo.AddWeft(options);
        });
        Cluster = builder.Build();
        await Cluster.DeployAsync();
        foreach (var silo in Cluster.Silos) await silo.ServiceProvider.GetRequiredService<ModelHost>().Ready;
    }

    public ModelHost Host => Cluster.Silos[0].ServiceProvider.GetRequiredService<ModelHost>();

    public IBatchGrain BatchGrain(int silo = 0, int device = 0) =>
        Grains.GetGrain<IBatchGrain>(new DeviceKey(Cluster.Silos[silo].SiloAddress, device).ToString());

    public async ValueTask DisposeAsync()
    {
        await Cluster.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
        GC.SuppressFinalize(this);
    }
}

/// <summary>Runs a turn to the end and collects it.</summary>
public sealed record TurnResult(string Text, IReadOnlyList<int> TokenIds, IReadOnlyList<int> PromptTokenIds,
    string FinishReason, Usage Usage);

public static class Turns
{
    public static async Task<TurnResult> RunAsync(this IConversationGrain conversation, TurnRequest request,
        CancellationToken ct = default)
    {
        var text = new System.Text.StringBuilder();
        var tokens = new List<int>();
        IReadOnlyList<int> prompt = [];
        TurnDelta? last = null;
        await foreach (var d in conversation.SendAsync(request with { ReturnTokenIds = true }, ct))
        {
            text.Append(d.Text);
            tokens.AddRange(d.TokenIds);
            prompt = d.PromptTokenIds ?? prompt;
            last = d;
        }
        return new TurnResult(text.ToString(), tokens, prompt, last!.FinishReason!, last.Usage!);
    }

    public static TurnRequest Chat(string user, SamplingOptions sampling) =>
        new() { Messages = [new ChatMessage("user", user)], Sampling = sampling };
}
