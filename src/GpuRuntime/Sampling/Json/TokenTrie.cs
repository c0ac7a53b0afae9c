using Weft.Models.Tokenization;

namespace Weft.GpuRuntime.Sampling.Json;

/// <summary>
/// The vocabulary's token bytes as a trie, flattened in depth-first order: node i's subtree is [i, End[i]), its
/// children start at i + 1 and follow one another by End. A mask walks it once, pruning every subtree whose prefix the
/// grammar rejects, so tokens that share a prefix share its work. Control, unknown and unused tokens (and tokens of no
/// bytes) are not in it: a grammar can only ask for text.
/// </summary>
public sealed class TokenTrie
{
    internal byte[] Byte { get; }
    internal int[] End { get; }
    internal int[] TokenStart { get; }
    internal int[] Tokens { get; }
    internal byte[][] Pieces { get; }
    public int VocabSize { get; }
    public int MaxTokenBytes { get; }
    /// <summary>Tokens that end generation (EOS and end-of-turn): allowed once the grammar is complete.</summary>
    public IReadOnlySet<int> EndTokens { get; }

    TokenTrie(byte[][] pieces, IReadOnlySet<int> endTokens)
    {
        VocabSize = pieces.Length;
        Pieces = pieces;
        EndTokens = endTokens;
        var root = new Building();
        for (int id = 0; id < pieces.Length; id++)
        {
            if (pieces[id].Length == 0 || endTokens.Contains(id)) continue;
            var n = root;
            foreach (byte b in pieces[id])
            {
                if (!n.Children.TryGetValue(b, out var c)) n.Children[b] = c = new Building();
                n = c;
            }
            n.Ids.Add(id);
            MaxTokenBytes = Math.Max(MaxTokenBytes, pieces[id].Length);
        }
        var bytes = new List<byte>();
        var ends = new List<int>();
        var starts = new List<int>();
        var tokens = new List<int>();
        Flatten(root, 0, bytes, ends, starts, tokens);
        starts.Add(tokens.Count);
        Byte = [.. bytes];
        End = [.. ends];
        TokenStart = [.. starts];
        Tokens = [.. tokens];
    }

    /// <summary>The trie of a tokenizer's vocabulary: each token's streaming bytes, as the reply decoder shows
    /// them.</summary>
    public static TokenTrie Build(Tokenizer tokenizer)
    {
        var pieces = new byte[tokenizer.VocabSize][];
        for (int id = 0; id < pieces.Length; id++)
            pieces[id] = tokenizer.GetTokenType(id) is TokenType.Control or TokenType.Unknown or TokenType.Unused
                ? [] : tokenizer.DecodeToken(id);
        return new TokenTrie(pieces, tokenizer.EndOfGenerationIds);
    }

    static void Flatten(Building n, byte b, List<byte> bytes, List<int> ends, List<int> starts, List<int> tokens)
    {
        int at = bytes.Count;
        bytes.Add(b);
        ends.Add(0);
        starts.Add(tokens.Count);
        tokens.AddRange(n.Ids);
        foreach (var (cb, child) in n.Children.OrderBy(c => c.Key)) Flatten(child, cb, bytes, ends, starts, tokens);
        ends[at] = bytes.Count;
    }

    sealed class Building
    {
        public Dictionary<byte, Building> Children { get; } = [];
        public List<int> Ids { get; } = [];
    }
}
