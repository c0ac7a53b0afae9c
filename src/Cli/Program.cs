using System.CommandLine;
using Weft.Cli;

var root = new RootCommand("weft: serve, chat with and measure llama-family models on Orleans")
{
    ModelCommands.Create(),
    BenchCommands.Create(),
    GpuCheckCommands.Create(),
};
return CliErrors.Run(() => root.Parse(args).Invoke());
