using System.CommandLine;
using Weft.Cli;

var root = new RootCommand("weft: serve, chat with and measure llama-family models on Orleans")
{
    ModelCommands.Create(),
    GenerateCommand.Create(),
    ChatCommand.Create(),
    BenchCommands.Create(),
    GpuCheckCommands.Create(),
};
return CliErrors.Run(() => root.Parse(args)
    .Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false }));
