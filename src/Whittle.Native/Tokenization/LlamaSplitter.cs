// Policy: hand-written scanners equivalent (on code points, as Oniguruma runs them for Hugging Face) to the split
// regexes of Llama 3 and Qwen2:
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
// Qwen2's differs only in \p{N} (one digit a piece). Alternatives are tried in the regex's order, and each one's
// backtracking is resolved by hand, so a piece costs time linear in its length whatever the text. The case-insensitive
// contractions are ASCII only: Oniguruma does not fold 'ſ' (U+017F) to 's' here (tests/.../splits/oracle.jsonl).
using static Whittle.Native.Tokenization.Gpt2Splitter;

namespace Whittle.Native.Tokenization;

internal static class LlamaSplitter
{
    /// <summary>Appends (start, length) of each regex match in s[start..end): the matches tile the range.</summary>
    /// <param name="maxDigits">3 for Llama 3's \p{N}{1,3}, 1 for Qwen2's \p{N}.</param>
    public static void Split(string s, int start, int end, int maxDigits, List<(int Start, int Length)> pieces)
    {
        int i = start;
        while (i < end)
        {
            int len = Match(s, i, end, maxDigits);
            pieces.Add((i, len));
            i += len;
        }
    }

    static bool IsNewline(char c) => c is '\r' or '\n';

    static int Match(string s, int i, int end, int maxDigits)
    {
        int contraction = Contraction(s, i, end);
        if (contraction > 0) return contraction;
        var cls = Classify(s, i, out int w);
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if (cls == Cls.Letter) return Run(s, i, end, Cls.Letter, int.MaxValue) - i;
        if (cls != Cls.Number && !IsNewline(s[i]) && i + w < end && Classify(s, i + w, out _) == Cls.Letter)
            return Run(s, i + w, end, Cls.Letter, int.MaxValue) - i;
        // \p{N}{1,3} (or \p{N})
        if (cls == Cls.Number) return Run(s, i, end, Cls.Number, maxDigits) - i;
        // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
        bool spaceThenOther = s[i] == ' ' && i + 1 < end && Classify(s, i + 1, out _) == Cls.Other;
        if (cls == Cls.Other || spaceThenOther)
        {
            int q = Run(s, spaceThenOther ? i + 1 : i, end, Cls.Other, int.MaxValue);
            while (q < end && IsNewline(s[q])) q++;
            return q - i;
        }
        // A whitespace run from i: `\s*[\r\n]+` ends after its last CR or LF; `\s+(?!\S)` gives back the last
        // character when a non-space follows; `\s+` takes it all.
        int j = i, lastNewline = -1, lastWidth = w;
        while (j < end && Classify(s, j, out int wj) == Cls.Space)
        {
            if (IsNewline(s[j])) lastNewline = j;
            lastWidth = wj;
            j += wj;
        }
        if (lastNewline >= 0) return lastNewline + 1 - i;
        if (j < end && j - i > lastWidth) return j - lastWidth - i;
        return j - i;
    }

    /// <summary>End of the run of class cls from p, at most maxCount code points long.</summary>
    static int Run(string s, int p, int end, Cls cls, int maxCount)
    {
        for (int count = 0; p < end && count < maxCount; count++)
        {
            if (Classify(s, p, out int w) != cls) break;
            p += w;
        }
        return p;
    }

    /// <summary>(?i:'s|'t|'re|'ve|'m|'ll|'d) at i: its length, or 0.</summary>
    static int Contraction(string s, int i, int end)
    {
        if (s[i] != '\'' || i + 1 >= end) return 0;
        char a = (char)(s[i + 1] | 0x20);   // ASCII lower case; non-letters never compare equal below
        if (s[i + 1] < 0x80 && a is 's' or 't' or 'm' or 'd') return 2;
        if (i + 2 >= end || s[i + 1] >= 0x80 || s[i + 2] >= 0x80) return 0;
        char b = (char)(s[i + 2] | 0x20);
        return (a, b) is ('r', 'e') or ('v', 'e') or ('l', 'l') ? 3 : 0;
    }
}
