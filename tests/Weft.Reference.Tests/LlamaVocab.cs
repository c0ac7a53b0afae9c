using System.Reflection;
using System.Text;
using LLama;
using LLama.Common;
using LLama.Native;

namespace Weft.Reference.Tests;

/// <summary>
/// A model's vocabulary loaded by llama.cpp (through LLamaSharp, vocabulary only): llama_tokenize,
/// llama_token_to_piece, llama_detokenize and the token attributes, for parity checks.
/// </summary>
public sealed unsafe class LlamaVocab : IDisposable
{
    // LLamaSharp keeps llama_detokenize and the vocabulary pointer internal; reach them by reflection.
    static readonly MethodInfo DetokenizeNative = typeof(NativeApi)
        .GetMethod("llama_detokenize", BindingFlags.NonPublic | BindingFlags.Static)
        ?? throw new MissingMethodException("NativeApi.llama_detokenize");
    static readonly PropertyInfo VocabNative = typeof(SafeLlamaModelHandle.Vocabulary)
        .GetProperty("VocabNative", BindingFlags.NonPublic | BindingFlags.Instance)
        ?? throw new MissingMemberException("Vocabulary.VocabNative");

    static LlamaVocab() => NativeLogConfig.llama_log_set((_, _) => { }); // llama.cpp logs every load at length

    readonly LLamaWeights _weights;

    LlamaVocab(LLamaWeights weights) => _weights = weights;

    public static LlamaVocab Load(string path) =>
        new(LLamaWeights.LoadFromFile(new ModelParams(path) { VocabOnly = true }));

    SafeLlamaModelHandle.Vocabulary Vocab => _weights.Vocab;

    public int Count => Vocab.Count;
    public int? Bos => Vocab.BOS is { } t ? (int)t : null;
    public int? Eos => Vocab.EOS is { } t ? (int)t : null;
    public bool AddBos => Vocab.ShouldAddBOS;

    public int[] Tokenize(string text, bool addSpecial, bool parseSpecial) =>
        _weights.Tokenize(text, addSpecial, parseSpecial, Encoding.UTF8).Select(t => (int)t).ToArray();

    public byte[] TokenToPiece(int id, bool special)
    {
        var buffer = new byte[256];
        uint n = _weights.NativeHandle.TokenToSpan(id, buffer, 0, special);
        if (n > buffer.Length) throw new InvalidOperationException($"token {id} piece is {n} bytes");
        return buffer[..(int)n];
    }

    public byte[] Detokenize(int[] ids, bool special)
    {
        var tokens = ids.Select(i => (LLamaToken)i).ToArray();
        void* vocab = Pointer.Unbox(VocabNative.GetValue(Vocab)!);
        for (int capacity = 256; ; capacity *= 2)
        {
            var text = new byte[capacity];
            fixed (LLamaToken* t = tokens)
            fixed (byte* p = text)
            {
                int n = (int)DetokenizeNative.Invoke(null, [
                    Pointer.Box(vocab, VocabNative.PropertyType), Pointer.Box(t, typeof(LLamaToken*)), tokens.Length,
                    Pointer.Box(p, typeof(byte*)), capacity, false, special])!;
                if (n >= 0) return text[..n];
                if (-n > capacity * 2) capacity = -n;
            }
        }
    }

    public bool IsEndOfGeneration(int id) => ((LLamaToken)id).IsEndOfGeneration(Vocab);

    public LLamaTokenAttr Attributes(int id) => ((LLamaToken)id).GetAttributes(Vocab);

    public void Dispose() => _weights.Dispose();
}
