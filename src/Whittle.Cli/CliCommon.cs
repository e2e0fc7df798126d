using System.CommandLine;
using System.Text.Json;
using Whittle.Native;

namespace Whittle.Cli;

/// <summary>Conventions every subcommand follows: errors as one line on stderr, exit codes, JSON output.</summary>
static class CliCommon
{
    public static readonly Option<bool> Verbose = new("--verbose") { Description = "Print stack traces for errors.", Recursive = true };
    public static readonly Option<bool> Json = new("--json") { Description = "Print machine-readable JSON instead of text." };

    public static readonly JsonSerializerOptions JsonOptions = new() { WriteIndented = true };

    /// <summary>WHITTLE_ATTENTION=f32 keeps bf16 models on the f32 attention kernels; read once, here at the command line.</summary>
    static readonly Lazy<bool> AttentionOptOut = new(() => Environment.GetEnvironmentVariable("WHITTLE_ATTENTION") switch
    {
        null or "" or "auto" => false,
        "f32" => true,
        var v => throw new WhittleException($"WHITTLE_ATTENTION={(v.Length > 20 ? v[..20] + "…" : v)}: expected f32 or auto"),
    });

    /// <summary>Sets a model's precision, and its attention's (the same, unless WHITTLE_ATTENTION=f32 opts out).</summary>
    public static void SetPrecision(Whittle.Native.Model.GptNeoX model, Whittle.Native.Model.Precision precision)
    {
        model.Precision = precision;
        if (AttentionOptOut.Value) model.Attention = Whittle.Native.Tensors.AttentionPrecision.F32;
    }

    public static int Run(RootCommand root, string[] args)
    {
        var parse = root.Parse(args);
        var config = new InvocationConfiguration { EnableDefaultExceptionHandler = false };
        try
        {
            return parse.Invoke(config);
        }
        catch (Exception e)
        {
            bool verbose = parse.GetValue(Verbose);
            var inner = e is System.Reflection.TargetInvocationException { InnerException: { } ie } ? ie : e;
            if (verbose) Console.Error.WriteLine(inner.ToString());
            else Console.Error.WriteLine(inner is WhittleException ? $"error: {inner.Message}" : $"error: {inner.GetType().Name}: {inner.Message} (run with --verbose for details)");
            return inner is WhittleException ? 1 : 2;
        }
    }
}
