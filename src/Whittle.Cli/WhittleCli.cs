namespace Whittle.Cli;

/// <summary>The command tree, one line per subcommand; also used by `whittle demo`, which runs the same commands in-process.</summary>
static class WhittleCli
{
    public static RootCommand CreateRoot()
    {
        var root = new RootCommand("whittle: small language models cheaply out of big ones (Whittle, SALT) on a from-scratch C#/CUDA " +
            "engine.");
        root.Options.Add(CliCommon.Verbose);
        root.Subcommands.Add(InfoCommand.Create());
        root.Subcommands.Add(DoctorCommand.Create());
        root.Subcommands.Add(PretrainCommand.Create());
        root.Subcommands.Add(EvalCommand.Create());
        root.Subcommands.Add(ImportanceCommand.Create());
        root.Subcommands.Add(SearchCommand.Create());
        root.Subcommands.Add(TrainSupernetCommand.Create());
        root.Subcommands.Add(ExtractCommand.Create());
        root.Subcommands.Add(EncodeCommand.Create());
        root.Subcommands.Add(DecodeCommand.Create());
        root.Subcommands.Add(TrainTokenizerCommand.Create());
        root.Subcommands.Add(TokenizeCommand.Create());
        root.Subcommands.Add(SaltSelectCommand.Create());
        root.Subcommands.Add(CacheTeacherCommand.Create());
        root.Subcommands.Add(DistillCommand.Create());
        root.Subcommands.Add(SaltCommand.Create());
        root.Subcommands.Add(DemoCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(DocsCommand.Create());
        return root;
    }
}
