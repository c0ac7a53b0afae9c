namespace Weft.Scheduling.Tests;

public sealed class DependencyTests
{
    [Fact]
    public void The_scheduler_uses_nothing_of_orleans_ilgpu_or_the_other_weft_projects()
    {
        var references = typeof(Scheduler).Assembly.GetReferencedAssemblies().Select(a => a.Name!).ToArray();
        Assert.Contains(references, r => r.StartsWith("System", StringComparison.Ordinal));
        Assert.DoesNotContain(references, r => r.StartsWith("Orleans", StringComparison.Ordinal)
            || r.StartsWith("ILGPU", StringComparison.Ordinal) || r.StartsWith("Weft", StringComparison.Ordinal));
    }
}
