// Policy: every input file the CLI reads, mutated (structure-aware for JSON, byte-level for everything), fed to the
// command a user would run, in-process through CliCommon.Run (same handlers, same exception-to-exit-code mapping as
// the binary, milliseconds a case). Every case must end in exit 0 or exit 1 with one "error: " line; exit 2, an
// exception escaping the CLI, more than one error line or a case running past its time limit fails the test, and the
// mutated files, the command and its output are saved under fuzz-failures/ for reproduction. Should a case crash the
// test process itself, fuzz-failures/<format>.in-progress.txt, written before every case, names it.
//
// CI runs the default counts (2,050 cases in all, seed 20261201). A longer run, e.g. 10,000 cases per format on a
// fresh seed:  WHITTLE_FUZZ_CASES=10000 WHITTLE_FUZZ_SEED=7 dotnet test tests/Whittle.Native.Tests -c Release --filter Category=Fuzz
// One case alone:  WHITTLE_FUZZ_SEED=s WHITTLE_FUZZ_CASE=i dotnet test ... --filter "Name~<format>"
using System.Diagnostics;
using Whittle.Native.Tests.Cli;

namespace Whittle.Native.Tests.Fuzz;

[NonParallelizable, Category("Fuzz")]
public class FuzzTests
{
    static FuzzWorld W => FuzzWorld.Instance;

    const int DefaultSeed = 20261201;
    static readonly TimeSpan CaseLimit = TimeSpan.FromSeconds(20);

    static int BaseSeed => int.TryParse(Environment.GetEnvironmentVariable("WHITTLE_FUZZ_SEED"), out int s) ? s : DefaultSeed;
    static int Cases(int ciDefault) =>
        int.TryParse(Environment.GetEnvironmentVariable("WHITTLE_FUZZ_CASES"), out int n) && n > 0 ? n : ciDefault;
    static int? OnlyCase => int.TryParse(Environment.GetEnvironmentVariable("WHITTLE_FUZZ_CASE"), out int i) ? i : null;

    /// <summary>What one case runs: the directory it owns (copied inputs, one of them mutated), the mutated file and the command.</summary>
    sealed record Case(string Dir, string Mutated, string[] Args);

    // ---------------------------------------------------------------- one test per format

    [Test]
    public void ConfigJson() => Fuzz("config.json", 450, (rng, i) =>
    {
        var dir = W.CopyOf(W.Model, "config");
        var file = Path.Combine(dir, "config.json");
        Mutate(file, rng, json: rng.Next(5) != 0);
        return new Case(dir, file, ["eval", "--model", dir, "--ids", W.Ids, "--seq-len", "8"]);
    });

    [Test]
    public void ModelSafetensors() => Fuzz("model.safetensors", 350, (rng, i) =>
    {
        var dir = W.CopyOf(W.Model, "safetensors");
        var file = Path.Combine(dir, "model.safetensors");
        var bytes = File.ReadAllBytes(file);
        int header = 8 + (int)Math.Min(BitConverter.ToUInt64(bytes), 1 << 20);
        File.WriteAllBytes(file, Mutators.MutateBytes(bytes, rng, hot: header));
        return new Case(dir, file, ["eval", "--model", dir, "--ids", W.Ids, "--seq-len", "8"]);
    });

    [Test]
    public void TokenizerJson() => Fuzz("tokenizer.json", 250, (rng, i) =>
    {
        var dir = Path.Combine(W.Root, "cases", $"tokenizer-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        var file = Path.Combine(dir, "tokenizer.json");
        File.Copy(W.Tokenizer, file);
        Mutate(file, rng, json: rng.Next(5) != 0);
        return new Case(dir, file, ["eval", "--model", W.Model, "--text", W.Text, "--tokenizer", file, "--seq-len", "8"]);
    });

    [Test]
    public void MetaJson() => Fuzz("meta.json", 300, (rng, i) =>
    {
        var dir = W.CopyOf(W.Dataset, "meta");
        var file = Path.Combine(dir, "meta.json");
        Mutate(file, rng, json: rng.Next(5) != 0);
        return new Case(dir, file, DatasetCommand(dir, i));
    });

    [Test]
    public void Shards() => Fuzz("shards", 250, (rng, i) =>
    {
        var dir = W.CopyOf(W.Dataset, "shards");
        var shards = Directory.GetFiles(dir, "*.bin").Order().ToArray();
        var file = shards[rng.Next(shards.Length)];
        File.WriteAllBytes(file, Mutators.MutateBytes(File.ReadAllBytes(file), rng));
        return new Case(dir, file, DatasetCommand(dir, i));
    });

    [Test]
    public void TrainerStateJson() => Fuzz("trainer_state.json", 200, (rng, i) =>
    {
        var dir = W.CopyOf(W.Run, "state");
        var file = Path.Combine(dir, "checkpoints", "step-0000001", "trainer_state.json");
        Mutate(file, rng, json: rng.Next(5) != 0);
        return new Case(dir, file, ["pretrain", .. W.TrainFlags(W.Dataset, dir, ("--steps", "2")), "--resume"]);
    });

    [Test]
    public void SubnetSpec() => Fuzz("subnet spec", 250, (rng, i) =>
    {
        var dir = Path.Combine(W.Root, "cases", $"subnet-{Guid.NewGuid():N}");
        Directory.CreateDirectory(dir);
        var file = Path.Combine(dir, "subnet.json");
        File.Copy(W.Subnet, file);
        Mutate(file, rng, json: rng.Next(5) != 0);
        return new Case(dir, file, ["eval", "--model", W.Model, "--ids", W.Ids, "--subnet", file, "--seq-len", "8"]);
    });

    /// <summary>Even cases read the validation split in order (eval), odd ones draw random training batches (one pretrain step).</summary>
    static string[] DatasetCommand(string dataDir, int i) => i % 2 == 0
        ? ["eval", "--model", W.Model, "--data", dataDir, "--seq-len", "8"]
        : ["pretrain", .. W.TrainFlags(dataDir, Path.Combine(dataDir, "run"))];

    static void Mutate(string file, Random rng, bool json)
    {
        var bytes = File.ReadAllBytes(file);
        File.WriteAllBytes(file, json ? Mutators.MutateJson(bytes, rng) : Mutators.MutateBytes(bytes, rng));
    }

    // ---------------------------------------------------------------- the harness

    static void Fuzz(string format, int ciCases, Func<Random, int, Case> make)
    {
        int seed = BaseSeed, cases = Cases(ciCases);
        var failures = new List<string>();
        var outcomes = new Dictionary<int, int>();
        var clock = Stopwatch.StartNew();
        var failDir = Path.Combine(TestContext.CurrentContext.WorkDirectory, "fuzz-failures");
        Directory.CreateDirectory(failDir);
        var inProgress = Path.Combine(failDir, $"{format.Replace(' ', '-')}.in-progress.txt");
        var indices = OnlyCase is { } only ? [only] : Enumerable.Range(0, cases);
        foreach (int i in indices)
        {
            // Each case has its own generator, seeded from (seed, format, index) alone: any case reproduces by itself.
            // (HashCode.Combine would not do: it is salted per process.)
            var rng = new Random(CaseSeed(seed, format, i));
            var c = make(rng, i);
            // A crash of the whole test process (a read outside a mapping, a stack overflow) runs no finally block:
            // this note, written before the case and removed after it, is what then names the case. Its folder
            // (the mutated input) is not cleaned up after a crash either.
            File.WriteAllText(
                inProgress, $"format: {format}\ncase folder: {c.Dir}\nmutated file: {c.Mutated}\ncommand: whittle " +
                $"{string.Join(' ', c.Args)}\n" +
                $"rerun: WHITTLE_FUZZ_SEED={seed} WHITTLE_FUZZ_CASE={i} dotnet test tests/Whittle.Native.Tests -c Release --filter " +
                    $"Name={TestContext.CurrentContext.Test.MethodName}\n");
            string? problem;
            (int Exit, string Stdout, string Stderr) r = default;
            var run = Task.Run(() => InProcessCli.Run(c.Args));
            if (!run.Wait(CaseLimit)) problem = $"no result after {CaseLimit.TotalSeconds:F0} s (a hang)";
            else if (run.IsFaulted) problem = $"an exception escaped the CLI: {run.Exception!.InnerException}";
            else
            {
                r = run.Result;
                outcomes[r.Exit] = outcomes.GetValueOrDefault(r.Exit) + 1;
                var lines = InProcessCli.ErrorLines(r.Stderr);
                problem = r.Exit switch
                {
                    0 => null,
                    1 when lines.Count == 1 && lines[0].StartsWith("error: ") => null,
                    1 => $"exit 1 but stderr is not one \"error: \" line",
                    _ => $"exit {r.Exit} (a bug, not a user error)",
                };
            }
            if (problem is null) { TryDelete(c.Dir); continue; }
            failures.Add(Save(format, seed, i, c, problem, r));
            if (failures.Count >= 5 || problem.Contains("hang")) break;
        }
        File.Delete(inProgress);
        TestContext.Out.WriteLine($"{format}: {cases} cases (seed {seed}) in {clock.Elapsed.TotalSeconds:F1} s; exits " +
            $"{string.Join(", ", outcomes.OrderBy(kv => kv.Key).Select(kv => $"{kv.Key}: {kv.Value}"))}");
        if (failures.Count > 0) Assert.Fail($"{format}: {failures.Count} failing case(s):\n{string.Join("\n", failures)}");
        // Both outcomes must occur: a mutator that only ever breaks the file (or never does) is not testing the loader.
        if (OnlyCase is null) Assert.That(outcomes.Keys, Is.SupersetOf(new[] { 1 }), $"{format}: no mutation produced a user error");
    }

    static string Save(string format, int seed, int i, Case c, string problem, (int Exit, string Stdout, string Stderr) r)
    {
        var dst = Path.Combine(TestContext.CurrentContext.WorkDirectory, "fuzz-failures", $"{format.Replace(' ', '-')}-seed{seed}-case{i}");
        if (Directory.Exists(dst)) Directory.Delete(dst, true);
        FuzzWorld.CopyDirectory(c.Dir, dst);
        File.WriteAllText(Path.Combine(dst, "repro.txt"),
            $"format: {format}\nproblem: {problem}\nmutated file: {Path.GetRelativePath(c.Dir, c.Mutated)} (in this folder; the case ran " +
                $"in {c.Dir})\ncommand: whittle {string.Join(' ', c.Args)}\n" +
            $"rerun: WHITTLE_FUZZ_SEED={seed} WHITTLE_FUZZ_CASE={i} dotnet test tests/Whittle.Native.Tests -c Release --filter " +
                $"Name={TestContext.CurrentContext.Test.MethodName}\n" +
            $"exit: {r.Exit}\nstdout:\n{r.Stdout}\nstderr:\n{r.Stderr}\n");
        return $"case {i} (seed {seed}): {problem}; saved to {dst}; stderr: {Shorten(r.Stderr)}";
    }

    static string Shorten(string? s) => s is null ? "" : s.Length <= 600 ? s : s[..600] + "…";

    static int CaseSeed(int seed, string format, int i)
    {
        ulong h = (ulong)(uint)seed * 0x9E3779B97F4A7C15UL;
        foreach (char ch in format) h = (h ^ ch) * 0x100000001B3UL;
        h ^= (ulong)i * 0xBF58476D1CE4E5B9UL;
        h = (h ^ (h >> 31)) * 0x94D049BB133111EBUL;
        return (int)(h >> 33);
    }

    static void TryDelete(string dir) { try { Directory.Delete(dir,
        true); } catch (IOException) { } catch (UnauthorizedAccessException) { } }
}
