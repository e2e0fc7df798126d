using Whittle.Cli;

// The `whittle` command. Each subcommand lives in Commands/<Name>Command.cs and is registered in WhittleCli.CreateRoot.
return CliCommon.Run(WhittleCli.CreateRoot(), args);
