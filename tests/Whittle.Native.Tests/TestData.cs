using System.IO.Compression;
using Whittle.Native.Data;
using Whittle.Native.Tokenization;

namespace Whittle.Native.Tests;

/// <summary>Small real data for training tests: the first ~400 KB of the bundled corpus, one document per chapter, made once per test
/// run.</summary>
static class TestData
{
    static readonly Lazy<string> Dir = new(Make);

    public static string RepoRoot => Path.GetFullPath(Path.Combine(TestContext.CurrentContext.TestDirectory, "..", "..", "..", "..", ".."));
    public static string RepoData => Path.Combine(RepoRoot, "data", "austen");
    public static string TokenizerPath => Path.Combine(RepoData, "tokenizer.json");
    /// <summary>A token dataset directory (train and val splits by chapter).</summary>
    public static string AustenSlice => Dir.Value;

    static string Make()
    {
        var root = Path.Combine(Path.GetTempPath(), $"whittle-testdata-{Environment.ProcessId}");
        Directory.CreateDirectory(root);
        using var gz = new GZipStream(File.OpenRead(Path.Combine(RepoData, "austen.txt.gz")), CompressionMode.Decompress);
        using var reader = new StreamReader(gz);
        var text = new char[400_000];
        int n = reader.ReadBlock(text, 0, text.Length);
        var slice = Path.Combine(root, "slice.txt");
        File.WriteAllText(slice, new string(text, 0, n));
        var dir = Path.Combine(root, "data");
        if (!Directory.Exists(dir))
            DatasetWriter.Write(
                Tokenizer.FromFile(TokenizerPath), new TokenizeOptions([slice], dir, ValFraction: 0.15, Seed: 3, DocStart: "^CHAPTER "));
        AppDomain.CurrentDomain.ProcessExit += (_, _) => { try { Directory.Delete(root, true); } catch (IOException) { } };
        return dir;
    }
}
