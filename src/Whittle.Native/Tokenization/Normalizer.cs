// Policy: text normalizers applied to each segment between added tokens, before pre-tokenization. Only those whose
// Hugging Face behaviour is reproduced exactly: NFC, Prepend, Replace with a literal pattern, and Sequences of them.
namespace Whittle.Native.Tokenization;

internal interface INormalizer
{
    string Normalize(string s);
}

internal sealed class SequenceNormalizer(INormalizer[] parts) : INormalizer
{
    public string Normalize(string s)
    {
        foreach (var p in parts) s = p.Normalize(s);
        return s;
    }
}

/// <summary>
/// Unicode NFC with our own tables (UnicodeNfcData), because the engine runs with invariant globalization, where
/// string.Normalize leaves non-ASCII text untouched.
/// </summary>
internal sealed class NfcNormalizer : INormalizer
{
    public string Normalize(string s) => UnicodeNfc.Normalize(s);
}

/// <summary>`Prepend`: puts a string in front of every non-empty segment (Llama 2's "▁").</summary>
internal sealed class PrependNormalizer(string prefix) : INormalizer
{
    public string Normalize(string s) => s.Length == 0 ? s : prefix + s;
}

/// <summary>`Replace` with a literal pattern: every non-overlapping occurrence, leftmost first (Llama 2's " " → "▁").</summary>
internal sealed class ReplaceNormalizer(string pattern, string content) : INormalizer
{
    public string Normalize(string s) => s.Replace(pattern, content, StringComparison.Ordinal);
}
