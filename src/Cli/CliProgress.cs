using Spectre.Console;

namespace Weft.Cli;

/// <summary>
/// Progress on stderr while a long step runs: a bar once the step reports a fraction (model creation and loading
/// report the share of tensor bytes done), a spinner and the elapsed time until then. Nothing when stderr is not a
/// terminal, so redirected output and CI logs stay as they were; the bar is cleared when the step ends, before its
/// results are printed on stdout.
/// </summary>
static class CliProgress
{
    static readonly IAnsiConsole? Terminal = Console.IsErrorRedirected ? null
        : AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });

    /// <summary>Runs <paramref name="work"/>, which may report the fraction done (0 to 1) through its
    /// argument.</summary>
    public static T Run<T>(string label, Func<Action<double>, T> work) =>
        Terminal is null ? work(_ => { }) : Display(Terminal).Start(ctx => Track(ctx, label, work));

    public static Task<T> RunAsync<T>(string label, Func<Action<double>, Task<T>> work) =>
        Terminal is null ? work(_ => { }) : Display(Terminal).StartAsync(async ctx =>
        {
            var task = AddTask(ctx, label);
            var result = await work(Reporter(task));
            task.StopTask();
            return result;
        });

    static Progress Display(IAnsiConsole terminal) => terminal.Progress().AutoClear(true).HideCompleted(true)
        .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(),
            new ElapsedTimeColumn(), new SpinnerColumn());

    static T Track<T>(ProgressContext ctx, string label, Func<Action<double>, T> work)
    {
        var task = AddTask(ctx, label);
        var result = work(Reporter(task));
        task.StopTask();
        return result;
    }

    static ProgressTask AddTask(ProgressContext ctx, string label)
    {
        var task = ctx.AddTask(Markup.Escape(label), maxValue: 1);
        task.IsIndeterminate = true;
        return task;
    }

    static Action<double> Reporter(ProgressTask task) => fraction =>
    {
        task.IsIndeterminate = false;
        task.Value = Math.Clamp(fraction, 0, 1);
    };
}
