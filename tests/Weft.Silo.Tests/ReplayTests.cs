using System.Net;
using System.Text.Json.Nodes;

namespace Weft.Silo.Tests;

/// <summary>A turn resent with its X-Turn-Id gets the stored reply in the same shape as the first answer.</summary>
public sealed class ReplayTests(SiloFixture silo) : IClassFixture<SiloFixture>
{
    static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task A_replayed_completion_returns_the_prompt_and_reply_token_ids_of_the_original()
    {
        async Task<JsonNode> Send()
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/completions")
            {
                Content = Http.Json("""
                    {"prompt":"Once upon a time","max_tokens":8,"temperature":1.0,"ignore_eos":true,
                     "return_token_ids":true,"conversation_id":"replayed"}
                    """),
            };
            request.Headers.Add("X-Turn-Id", "replayed-1");
            using var response = await silo.Http.SendAsync(request, Ct);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            return JsonNode.Parse(await response.Content.ReadAsStringAsync(Ct))!;
        }

        var first = await Send();
        var again = await Send();
        Assert.NotEmpty(first["prompt_token_ids"]!.AsArray());
        // sampled: only a stored reply repeats the original
        foreach (string field in new[] { "prompt_token_ids", "usage" })
            Assert.Equal(first[field]!.ToJsonString(), again[field]!.ToJsonString());
        foreach (string field in new[] { "text", "token_ids", "finish_reason" })
            Assert.Equal(first["choices"]![0]![field]!.ToJsonString(), again["choices"]![0]![field]!.ToJsonString());
    }
}
