// Policy: the pre-tokenizers of Hugging Face BPE models (GPT-2, GPT-NeoX, Llama 3, Qwen2, SmolLM, Llama 2, Mistral),
// as a list of steps that each refine a list of (start, length) pieces of one segment. A Split regex is run by a
// hand-written scanner for each regex we know (GPT-2, Llama 3, Qwen2): .NET's regex engine differs from Oniguruma
// (surrogate pairs, \s, case folding), so any other regex is refused when the tokenizer is loaded (TokenizerLoader),
// never approximated. Every step is linear in the segment's length and keeps no state between calls (one tokenizer
// encodes many texts in parallel).
namespace Whittle.Native.Tokenization;

internal abstract class PreTokenizerStep
{
    /// <summary>Splits each piece of <paramref name="input"/> (over s) into <paramref name="output"/>.</summary>
    public abstract void Apply(string s, List<(int Start, int Length)> input, List<(int Start, int Length)> output);
}

/// <summary>`ByteLevel` with use_regex: the GPT-2 split. Without use_regex it leaves pieces whole.</summary>
internal sealed class ByteLevelStep(bool useRegex) : PreTokenizerStep
{
    public bool UseRegex => useRegex;

    public override void Apply(string s, List<(int Start, int Length)> input, List<(int Start, int Length)> output)
    {
        if (!useRegex) { output.AddRange(input); return; }
        foreach (var (start, length) in input) Gpt2Splitter.Split(s, start, start + length, output);
    }
}

/// <summary>How a split treats its matches (Hugging Face's SplitDelimiterBehavior).</summary>
internal enum SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous }

/// <summary>
/// Hugging Face's split of one piece into pieces: the pattern's matches and the gaps between them, flags inverted
/// when `invert`, then merged or dropped by the behaviour. Empty pieces are dropped, as Hugging Face drops them.
/// </summary>
internal abstract class PatternStep(SplitBehavior behavior, bool invert) : PreTokenizerStep
{

    public SplitBehavior Behavior => behavior;
    public bool Invert => invert;

    /// <summary>Appends the matches of the pattern in s[start..end), in order, not overlapping.</summary>
    protected abstract void FindMatches(string s, int start, int end, List<(int Start, int End)> matches);

    public override void Apply(string s, List<(int Start, int Length)> input, List<(int Start, int Length)> output)
    {
        // Per call, not per step: one tokenizer encodes many texts at once (EncodeBatch).
        var matches = new List<(int Start, int End)>();
        var found = new List<(int Start, int End, bool Match)>();
        foreach (var (start, length) in input)
        {
            matches.Clear();
            FindMatches(s, start, start + length, matches);
            found.Clear();
            int prev = start;
            foreach (var (ms, me) in matches)
            {
                if (ms > prev) found.Add((prev, ms, invert));
                found.Add((ms, me, !invert));
                prev = me;
            }
            if (start + length > prev) found.Add((prev, start + length, invert));
            Merge(found, behavior, output);
        }
    }

    static void Merge(List<(int Start, int End, bool Match)> found, SplitBehavior behavior, List<(int Start, int Length)> output)
    {
        int first = output.Count;
        bool previous = false;
        if (behavior == SplitBehavior.MergedWithNext)
        {
            // Folded from the end: a match starts the piece that follows it.
            for (int k = found.Count - 1; k >= 0; k--)
            {
                var (s, e, m) = found[k];
                if (m && !previous && output.Count > first) output[^1] = (s, output[^1].Start + output[^1].Length - s);
                else output.Add((s, e - s));
                previous = m;
            }
            output.Reverse(first, output.Count - first);
        }
        else
        {
            foreach (var (s, e, m) in found)
            {
                bool extend = behavior switch
                {
                    SplitBehavior.Contiguous => m == previous,
                    SplitBehavior.MergedWithPrevious => m && !previous,
                    _ => false,
                };
                if (behavior == SplitBehavior.Removed && m) { previous = m; continue; }
                if (extend && output.Count > first) output[^1] = (output[^1].Start, e - output[^1].Start);
                else output.Add((s, e - s));
                previous = m;
            }
        }
        output.RemoveAll(p => p.Length == 0);
    }
}

/// <summary>`Split` with a regex we have a scanner for. Its matches tile the text.</summary>
internal sealed class RegexSplitStep(KnownSplitRegex regex, SplitBehavior behavior, bool invert) : PatternStep(behavior, invert)
{
    public KnownSplitRegex Regex => regex;
    /// <summary>Every match is its own piece: the matches tile the text, so MergedWith* change nothing either.</summary>
    public bool Isolates => !Invert && Behavior is SplitBehavior.Isolated or SplitBehavior.MergedWithPrevious
        or SplitBehavior.MergedWithNext;

    protected override void FindMatches(string s, int start, int end, List<(int Start, int End)> matches)
    {
        var pieces = new List<(int Start, int Length)>();
        switch (regex)
        {
            case KnownSplitRegex.Gpt2: Gpt2Splitter.Split(s, start, end, pieces); break;
            case KnownSplitRegex.Llama3: LlamaSplitter.Split(s, start, end, 3, pieces); break;
            case KnownSplitRegex.Qwen2: LlamaSplitter.Split(s, start, end, 1, pieces); break;
        }
        foreach (var (ps, pl) in pieces) matches.Add((ps, ps + pl));
    }
}

/// <summary>`Split` with a literal string pattern: its non-overlapping occurrences, leftmost first.</summary>
internal sealed class StringSplitStep(string pattern, SplitBehavior behavior, bool invert) : PatternStep(behavior, invert)
{
    protected override void FindMatches(string s, int start, int end, List<(int Start, int End)> matches)
    {
        int p = start;
        while (p < end)
        {
            int at = s.AsSpan(p, end - p).IndexOf(pattern, StringComparison.Ordinal);
            if (at < 0) break;
            matches.Add((p + at, p + at + pattern.Length));
            p += at + pattern.Length;
        }
    }
}

/// <summary>`Digits`: each numeric character (\p{N}) its own piece, or runs of them (individual_digits false).</summary>
internal sealed class DigitsStep(bool individual)
    : PatternStep(individual ? SplitBehavior.Isolated : SplitBehavior.Contiguous, invert: false)
{
    protected override void FindMatches(string s, int start, int end, List<(int Start, int End)> matches)
    {
        for (int p = start; p < end;)
        {
            bool numeric = Gpt2Splitter.Classify(s, p, out int w) == Gpt2Splitter.Cls.Number;
            if (numeric) matches.Add((p, p + w));
            p += w;
        }
    }
}

/// <summary>`Metaspace` with split: each replacement character starts a piece (MergedWithNext). The replacement of
/// spaces and the prefix are done on the whole segment first (PreTokenizer.Prepare).</summary>
internal sealed class MetaspaceSplitStep(char replacement) : PatternStep(SplitBehavior.MergedWithNext, invert: false)
{
    protected override void FindMatches(string s, int start, int end, List<(int Start, int End)> matches)
    {
        for (int p = s.IndexOf(replacement, start, end - start); p >= 0; p = s.IndexOf(replacement, p + 1, end - p - 1))
            matches.Add((p, p + 1));
    }
}

/// <summary>The Split regexes with a hand-written scanner.</summary>
internal enum KnownSplitRegex { Gpt2, Llama3, Qwen2 }

/// <summary>When Metaspace puts its replacement character in front of a segment.</summary>
internal enum PrependScheme { Always, First, Never }

/// <summary>
/// A pre-tokenizer: what its first step does to a whole segment (ByteLevel's add_prefix_space, Metaspace's space
/// replacement and prefix; Hugging Face does these per piece, which is the whole segment when nothing split before),
/// then the steps. ByteLevel means the model sees the UTF-8 bytes of each piece.
/// </summary>
internal sealed class PreTokenizer(PreTokenizerStep[] steps, bool byteLevel, bool prefixSpace, char? metaspace,
    PrependScheme prependScheme)
{
    public static readonly PreTokenizer None = new([], false, false, null, PrependScheme.Never);

    public PreTokenizerStep[] Steps => steps;
    public bool ByteLevel => byteLevel;
    public char? Metaspace => metaspace;

    /// <summary>
    /// The segment s[start..end) as the steps see it. atTextStart: the segment begins the text (Metaspace's
    /// prepend_scheme "first" prefixes only that one).
    /// </summary>
    public (string S, int Start, int End) Prepare(string s, int start, int end, bool atTextStart)
    {
        if (prefixSpace && s[start] != ' ') return (" " + s.Substring(start, end - start), 0, end - start + 1);
        if (metaspace is not char rep) return (s, start, end);
        var replaced = s.AsSpan(start, end - start).Contains(' ') ? s.Substring(start, end - start).Replace(' ', rep)
            : s.Substring(start, end - start);
        bool prepend = prependScheme == PrependScheme.Always || (prependScheme == PrependScheme.First && atTextStart);
        if (prepend && replaced[0] != rep) replaced = rep + replaced;
        return (replaced, 0, replaced.Length);
    }

    /// <summary>Splits the non-empty segment text[start..end) into pieces of the returned string.</summary>
    public string Split(string text, int start, int end, bool atTextStart, ref List<(int Start, int Length)> pieces,
        ref List<(int Start, int Length)> scratch)
    {
        var (s, from, to) = Prepare(text, start, end, atTextStart);
        pieces.Clear();
        pieces.Add((from, to - from));
        foreach (var step in steps)
        {
            scratch.Clear();
            step.Apply(s, pieces, scratch);
            (pieces, scratch) = (scratch, pieces);
        }
        return s;
    }

    /// <summary>The pieces of one whole text as Hugging Face's pre_tokenize_str shows them (byte-level pieces in the
    /// byte table's chars). For tests.</summary>
    public List<string> Pieces(string text)
    {
        if (text.Length == 0) return [];
        List<(int Start, int Length)> pieces = [], scratch = [];
        var s = Split(text, 0, text.Length, atTextStart: true, ref pieces, ref scratch);
        return pieces.Select(p => s.Substring(p.Start, p.Length))
            .Select(p => byteLevel ? Tokenization.ByteLevel.Encode(System.Text.Encoding.UTF8.GetBytes(p)) : p).ToList();
    }
}
