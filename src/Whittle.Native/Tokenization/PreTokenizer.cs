// Policy: the pre-tokenizers Hugging Face byte-level BPE models use, as a list of steps that each refine a list of
// (start, length) pieces of one segment. Only what GPT-2, GPT-NeoX/Pythia and regex-split (Llama-3 style) models
// need is supported; anything else is refused when the tokenizer is loaded rather than silently encoded differently.
using System.Text.RegularExpressions;

namespace Whittle.Native.Tokenization;

internal abstract class PreTokenizerStep
{
    /// <summary>Splits each piece of <paramref name="input"/> (over s) into <paramref name="output"/>.</summary>
    public abstract void Apply(string s, List<(int Start, int Length)> input, List<(int Start, int Length)> output);
}

/// <summary>`ByteLevel` with use_regex: the GPT-2 split. Without use_regex it leaves pieces whole.</summary>
internal sealed class ByteLevelStep(bool useRegex) : PreTokenizerStep
{
    public override void Apply(string s, List<(int Start, int Length)> input, List<(int Start, int Length)> output)
    {
        if (!useRegex) { output.AddRange(input); return; }
        foreach (var (start, length) in input) Gpt2Splitter.Split(s, start, start + length, output);
    }
}

/// <summary>`Split` with a regex or literal pattern. Behaviours: Isolated, Removed, MergedWithPrevious, MergedWithNext.</summary>
internal sealed class SplitStep : PreTokenizerStep
{
    public enum Behavior { Isolated, Removed, MergedWithPrevious, MergedWithNext }
    readonly Regex _pattern;
    readonly Behavior _behavior;
    readonly string _source;

    /// <summary>Longest one search for the next match may take. Real pre-tokenizer patterns find a match in
    /// microseconds even in a megabyte of text; a pattern that backtracks exponentially (a hostile tokenizer.json)
    /// would otherwise hang the process.</summary>
    public static readonly TimeSpan MatchTimeout = TimeSpan.FromSeconds(2);

    public SplitStep(Regex pattern, Behavior behavior, string source = "tokenizer") { _pattern = pattern; _behavior = behavior;
    _source = source; }

    public override void Apply(string s, List<(int Start, int Length)> input, List<(int Start, int Length)> output)
    {
        try { ApplyUnbounded(s, input, output); }
        catch (RegexMatchTimeoutException)
        {
            throw new InvalidFileException(
                _source, $"pre_tokenizer: Split pattern '{ErrorText.Clip(_pattern.ToString(), 80)}' took longer than " +
                $"{MatchTimeout.TotalSeconds:0} s to match a {s.Length:N0}-character text (catastrophic backtracking?); simplify the " +
                $"pattern");
        }
    }

    void ApplyUnbounded(string s, List<(int Start, int Length)> input, List<(int Start, int Length)> output)
    {
        foreach (var (start, length) in input)
        {
            int end = start + length, pos = start;
            int pendingStart = -1;   // MergedWithNext: start of a match waiting for the text after it
            for (var m = _pattern.Match(s, start, length); m.Success; m = m.NextMatch())
            {
                if (m.Length == 0) continue;
                int ms = m.Index, me = m.Index + m.Length;
                switch (_behavior)
                {
                    case Behavior.Isolated:
                        if (ms > pos) output.Add((pos, ms - pos));
                        output.Add((ms, me - ms));
                        pos = me;
                        break;
                    case Behavior.Removed:
                        if (ms > pos) output.Add((pos, ms - pos));
                        pos = me;
                        break;
                    case Behavior.MergedWithPrevious:
                        output.Add((pos, me - pos));
                        pos = me;
                        break;
                    case Behavior.MergedWithNext:
                        int from = pendingStart >= 0 ? pendingStart : pos;
                        if (ms > from) output.Add((from, ms - from));
                        pendingStart = ms;
                        pos = me;
                        break;
                }
            }
            int tail = pendingStart >= 0 ? pendingStart : pos;
            if (end > tail) output.Add((tail, end - tail));
        }
    }
}
