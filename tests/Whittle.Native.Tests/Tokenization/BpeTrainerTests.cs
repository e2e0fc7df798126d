// Policy: the trainer against a naive reference written here (recount every pair from scratch each step, same tie
// rule), and its output against our encoder's contract: loadable, deterministic, every merge used in order.
using System.Text;
using System.Text.Json.Nodes;
using Whittle.Native.Tokenization;

namespace Whittle.Native.Tests.Tokenization;

public class BpeTrainerTests
{
    const string Corpus = "low lower lowest newer newest wider wide widest low low new new newest\nthe cat sat on the mat; the cat's hat\n";

    /// <summary>Reference BPE: words as lists of byte strings, full recount per merge.</summary>
    static List<string> NaiveMerges(string text, int count)
    {
        var words = new Dictionary<string, int>();
        foreach (System.Text.RegularExpressions.Match m in System.Text.RegularExpressions.Regex.Matches(text,
            @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"))
            words[m.Value] = words.GetValueOrDefault(m.Value) + 1;
        var split = words.Keys.Select(w => Encoding.UTF8.GetBytes(w).Select(b => new[] { b }).ToList()).ToList();
        var freq = words.Values.ToList();
        var merges = new List<string>();
        for (int step = 0; step < count; step++)
        {
            var pairs = new Dictionary<(string, string), (int Count, byte[] L, byte[] R)>();
            for (int w = 0; w < split.Count; w++)
                for (int i = 0; i + 1 < split[w].Count; i++)
                {
                    var key = (Convert.ToHexString(split[w][i]), Convert.ToHexString(split[w][i + 1]));
                    var old = pairs.GetValueOrDefault(key, (Count: 0, L: split[w][i], R: split[w][i + 1]));
                    pairs[key] = (old.Count + freq[w], old.L, old.R);
                }
            if (pairs.Count == 0) break;
            var best = pairs.Values.OrderByDescending(p => p.Count)
                .ThenBy(p => p.L, Comparer<byte[]>.Create((a, b) => a.AsSpan().SequenceCompareTo(b)))
                .ThenBy(p => p.R, Comparer<byte[]>.Create((a, b) => a.AsSpan().SequenceCompareTo(b))).First();
            merges.Add(ByteLevel.Encode(best.L) + " " + ByteLevel.Encode(best.R));
            foreach (var s in split)
                for (int i = 0; i + 1 < s.Count; i++)
                    if (s[i].AsSpan().SequenceEqual(best.L) && s[i + 1].AsSpan().SequenceEqual(best.R))
                    { s[i] = [.. best.L, .. best.R]; s.RemoveAt(i + 1); }
        }
        return merges;
    }

    [Test]
    public void MergesEqualNaiveReference()
    {
        var trainer = new BpeTrainer(["<|endoftext|>"]);
        trainer.AddText(Corpus);
        var json = JsonNode.Parse(trainer.Train(257 + 30))!;
        var merges = json["model"]!["merges"]!.AsArray().Select(m => m!.GetValue<string>()).ToList();
        Assert.That(merges, Is.EqualTo(NaiveMerges(Corpus, merges.Count)));
        Assert.That(merges, Has.Count.EqualTo(30));
    }

    [Test]
    public void DeterministicAndLoadable()
    {
        byte[] Train() { var t = new BpeTrainer(["<|endoftext|>", "<|pad|>"]); t.AddText(Corpus); t.AddText("<|endoftext|>" + Corpus);
        return t.Train(280); }
        var a = Train();
        Assert.That(Train(), Is.EqualTo(a));
        var path = Path.Combine(Path.GetTempPath(), $"whittle-bpe-{Guid.NewGuid():N}.json");
        File.WriteAllBytes(path, a);
        try
        {
            var tok = Tokenizer.FromFile(path);
            Assert.That(tok.VocabSize, Is.EqualTo(280));
            Assert.That(tok.EosId, Is.EqualTo(0));
            Assert.That(tok.Encode(" newest<|pad|>"), Has.Length.LessThan(" newest".Length), "learned merges shorten frequent words");
            Assert.That(tok.Encode("<|pad|>"), Is.EqualTo(new[] { 1 }));
        }
        finally { File.Delete(path); }
    }

    [Test]
    public void TooSmallVocabularyIsAnError() =>
        Assert.That(() => { var t = new BpeTrainer(["<|endoftext|>"]); t.AddText("x"); t.Train(100); },
            Throws.InstanceOf<WhittleException>().With.Message.Contains("too small"));
}
