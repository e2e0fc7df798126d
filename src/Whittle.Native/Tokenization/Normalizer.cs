// Policy: text normalizers applied to each segment between added tokens, before pre-tokenization.
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
