namespace Weft.Abstractions;

/// <summary>
/// A stored response of the Responses API (POST /v1/responses with "store"), keyed "{tenant}/{resp_id}"
/// (<see cref="ConversationKey.Of"/>): what GET /v1/responses/{id} returns, and what a later response that names it
/// as its previous_response_id continues from.
/// </summary>
[Alias("weft.IResponseGrain")]
public interface IResponseGrain : IGrainWithStringKey
{
    /// <summary>Null when there is no such response (never stored, or deleted).</summary>
    [Alias("Get")]
    Task<StoredResponse?> GetAsync();

    [Alias("Set")]
    Task SetAsync(StoredResponse response);

    /// <summary>False when there was nothing to delete.</summary>
    [Alias("Delete")]
    Task<bool> DeleteAsync();
}

/// <summary>
/// A response as it was returned (its JSON), the conversation whose KV cache holds its tokens, and the chat history
/// through its output (without its instructions, which a continuation does not inherit).
/// </summary>
// Lists, not interfaces: the ADO.NET store's JSON names each value's type, and a collection expression's own type
// cannot be read back.
[GenerateSerializer, Immutable, Alias("weft.StoredResponse")]
public sealed record StoredResponse(
    [property: Id(0)] string Json,
    [property: Id(1)] string Conversation,
    [property: Id(2)] List<ChatMessage> Messages);
