// Policy: our NFC against Unicode's own normalization test data points (UAX #15 examples and NormalizationTest.txt
// style cases, expected values written from the standard, not from our code).
using Whittle.Native.Tokenization;

namespace Whittle.Native.Tests.Tokenization;

public class NfcTests
{
    [TestCase("e\u0301", "\u00e9")]                      // compose
    [TestCase("\u212b", "\u00c5")]                       // singleton: ANGSTROM SIGN → Å
    [TestCase("\u2126", "\u03a9")]                       // OHM SIGN → OMEGA
    [TestCase("q\u0307\u0323", "q\u0323\u0307")]         // reorder by combining class, nothing composes
    [TestCase("\u1e0b\u0323", "\u1e0d\u0307")]           // UAX #15: d-dot-above + dot-below → d-dot-below + dot-above
    [TestCase("\u1100\u1161\u11a8", "\uac01")]           // Hangul LVT
    [TestCase("\u0344", "\u0308\u0301")]                 // composition exclusion stays decomposed
    [TestCase("a\u0328\u0301", "\u0105\u0301")]          // ogonek (class 202) sorts first and composes; ą + acute has no composite
    [TestCase("ﬁ", "ﬁ")]                                  // compatibility mappings are not NFC
    [TestCase("plain ascii", "plain ascii")]
    public void Normalizes(string input, string expected) => Assert.That(UnicodeNfc.Normalize(input), Is.EqualTo(expected));
}
