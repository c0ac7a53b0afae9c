using System.CommandLine;
using Weft.Scheduling;

namespace Weft.Cli;

/// <summary>The sampling options shared by the commands that generate.</summary>
sealed class SamplingOptionsBinder
{
    readonly Option<float> _temperature = new("--temperature")
    { Description = "0 is greedy", DefaultValueFactory = _ => 0.8f };
    readonly Option<float> _topP = new("--top-p") { DefaultValueFactory = _ => 1f };
    readonly Option<int> _topK = new("--top-k") { Description = "0 disables" };
    readonly Option<float> _minP = new("--min-p");
    readonly Option<ulong?> _seed = new("--seed");
    readonly Option<int> _maxTokens = new("--max-tokens") { DefaultValueFactory = _ => 128 };
    readonly Option<float> _presence = new("--presence-penalty");
    readonly Option<float> _frequency = new("--frequency-penalty");
    readonly Option<float> _repetition = new("--repetition-penalty") { DefaultValueFactory = _ => 1f };
    readonly Option<bool> _ignoreEos = new("--ignore-eos");
    readonly Option<string[]> _stop = new("--stop")
    { Description = "stop string (repeatable)", AllowMultipleArgumentsPerToken = false };

    public void AddTo(Command cmd)
    {
        foreach (var o in new Option[] { _temperature, _topP, _topK, _minP, _seed, _maxTokens, _presence, _frequency,
            _repetition, _ignoreEos, _stop })
            cmd.Options.Add(o);
    }

    public SamplingParams Params(ParseResult r, int vocabSize)
    {
        var p = new SamplingParams
        {
            Temperature = r.GetValue(_temperature),
            TopP = r.GetValue(_topP),
            TopK = r.GetValue(_topK),
            MinP = r.GetValue(_minP),
            Seed = r.GetValue(_seed),
            MaxTokens = r.GetValue(_maxTokens),
            PresencePenalty = r.GetValue(_presence),
            FrequencyPenalty = r.GetValue(_frequency),
            RepetitionPenalty = r.GetValue(_repetition),
            IgnoreEos = r.GetValue(_ignoreEos),
        };
        return p.Validate(vocabSize) is { } problem ? throw new ArgumentException(problem.Message) : p;
    }

    public IReadOnlyList<string> Stop(ParseResult r) => r.GetValue(_stop) ?? [];
}
