using System.Diagnostics;

namespace Whittle.Native.Tests.Cli;

/// <summary>Runs the built `whittle` command (whittle.dll beside the tests) as a separate process, as a user would.</summary>
static class CliRunner
{
    public static (int Exit, string Stdout, string Stderr) Run(params string[] args) => RunIn(null, null, args);

    public static (int Exit, string Stdout, string Stderr) RunIn(string? workingDir, string? stdin, params string[] args) =>
        RunWithin(TimeSpan.FromMinutes(10), workingDir, stdin, null, args);

    /// <summary>Runs with extra environment variables (a null value removes the variable).</summary>
    public static (int Exit, string Stdout, string Stderr) RunWith(
        string? workingDir, string? stdin, IReadOnlyDictionary<string, string?>? environment,
        params string[] args) => RunWithin(TimeSpan.FromMinutes(10), workingDir, stdin, environment, args);

    /// <summary>Like RunIn, but a run longer than <paramref name="limit"/> is killed and fails the test (a hang is a bug).</summary>
    public static (int Exit, string Stdout, string Stderr) RunWithin(
        TimeSpan limit, string? workingDir, string? stdin, params string[] args) =>
        RunWithin(limit, workingDir, stdin, null, args);

    static (int Exit, string Stdout, string Stderr) RunWithin(TimeSpan limit, string? workingDir, string? stdin,
        IReadOnlyDictionary<string, string?>? environment, string[] args)
    {
        var dll = Path.Combine(TestContext.CurrentContext.TestDirectory, "whittle.dll");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true,
            RedirectStandardInput = stdin is not null, UseShellExecute = false };
        foreach (var (name, value) in environment ?? new Dictionary<string, string?>())
            if (value is null) psi.Environment.Remove(name); else psi.Environment[name] = value;
        if (workingDir is not null) psi.WorkingDirectory = workingDir;
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        if (stdin is not null) { p.StandardInput.Write(stdin); p.StandardInput.Close(); }
        var outTask = p.StandardOutput.ReadToEndAsync();
        var errTask = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(limit))
        {
            p.Kill(true);
            throw new TimeoutException($"whittle {string.Join(' ', args.Select(a => ErrorText.Clip(a, 80)))} ran longer than {limit}");
        }
        return (p.ExitCode, outTask.Result, errTask.Result);
    }

    public static string Fixture(string name) => Path.Combine(TestContext.CurrentContext.TestDirectory, "fixtures", name);
}
